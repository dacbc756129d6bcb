package certs_test

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/tlsx"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f, err := certs.Init(certs.Options{Dir: dir, ServerNames: []string{"broker.example.com", "127.0.0.1", "::1", "mqtt.local"},
		ClientNames: []string{"gw-01", "gw-02"}, Days: 100, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ca, srv := readCert(t, f.CA.Cert), readCert(t, f.Server.Cert)
	if !ca.IsCA || !strings.HasPrefix(ca.Subject.CommonName, "edgegw CA ") || ca.Subject.CommonName != f.CA.Name {
		t.Errorf("CA subject %q", ca.Subject)
	}
	if srv.Subject.CommonName != "broker.example.com" || srv.Subject.String() == ca.Subject.String() {
		t.Errorf("server subject %q", srv.Subject)
	}
	if strings.Join(srv.DNSNames, ",") != "broker.example.com,mqtt.local" || len(srv.IPAddresses) != 2 {
		t.Errorf("server SANs %v %v", srv.DNSNames, srv.IPAddresses)
	}
	if !srv.NotAfter.Equal(now.Add(100*24*time.Hour).Truncate(time.Second)) || !ca.NotAfter.After(now.AddDate(9, 0, 0)) {
		t.Errorf("validity: server %v CA %v", srv.NotAfter, ca.NotAfter)
	}
	if _, ok := srv.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("default key type: %T", srv.PublicKey)
	}
	subjects := map[string]bool{ca.Subject.String(): true, srv.Subject.String(): true}
	for _, name := range []string{"gw-01", "gw-02"} {
		c, ok := f.Client(name)
		if !ok {
			t.Fatalf("no client %s", name)
		}
		cc := readCert(t, c.Cert)
		if cc.Subject.CommonName != name || subjects[cc.Subject.String()] {
			t.Errorf("client subject %q not distinct", cc.Subject)
		}
		subjects[cc.Subject.String()] = true
		if cc.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
			t.Errorf("client usage %v", cc.ExtKeyUsage)
		}
	}
	// Keys 0600, certificates 0644.
	for _, p := range []string{f.CA.Key, f.Server.Key, f.Clients[0].Key, f.Clients[1].Key} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v %v", p, fi.Mode(), err)
		}
	}
	// OpenSSL (what Mosquitto uses) agrees with the chain; the clock is the
	// one the certificates were made for.
	for _, p := range []string{f.Server.Cert, f.Clients[0].Cert} {
		out, err := exec.Command("openssl", "verify", "-attime", "1767400000", "-CAfile", f.CA.Cert, p).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Errorf("openssl verify %s: %v %s", p, err, out)
		}
	}
	// A second init must not replace the CA by accident.
	if _, err := certs.Init(certs.Options{Dir: dir, ServerNames: []string{"x"}}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second init: %v", err)
	}
	if _, err := certs.Init(certs.Options{Dir: dir, ServerNames: []string{"x"}, Overwrite: true}); err != nil {
		t.Errorf("overwrite: %v", err)
	}
}

func TestInitRejects(t *testing.T) {
	for _, o := range []certs.Options{
		{ServerNames: nil},
		{ServerNames: []string{"bad name"}},
		{ServerNames: []string{"ok"}, ClientNames: []string{"../evil"}},
		{ServerNames: []string{"ok"}, ClientNames: []string{"ca"}},
		{ServerNames: []string{"ok"}, KeyType: "dsa"},
	} {
		o.Dir = t.TempDir()
		if _, err := certs.Init(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestClientFromEncryptedCA(t *testing.T) {
	dir := t.TempDir()
	f, err := certs.Init(certs.Options{Dir: dir, ServerNames: []string{"localhost"}, ClientNames: []string{"gw-01"}, KeyPassword: "pw", KeyType: "rsa2048"})
	if err != nil {
		t.Fatal(err)
	}
	if head, _ := os.ReadFile(f.CA.Key); !strings.Contains(string(head), "ENCRYPTED PRIVATE KEY") {
		t.Fatal("CA key not encrypted")
	}
	if head, _ := os.ReadFile(f.Server.Key); strings.Contains(string(head), "ENCRYPTED") {
		t.Fatal("server key encrypted: Mosquitto could not read it")
	}
	if _, err := certs.Client(dir, "gw-02", certs.Options{}); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("without the CA password: %v", err)
	}
	g, err := certs.Client(dir, "gw-02", certs.Options{KeyPassword: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := g.Client("gw-02")
	if _, err := exec.Command("openssl", "verify", "-CAfile", f.CA.Cert, c.Cert).CombinedOutput(); err != nil {
		t.Errorf("openssl verify: %v", err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("pw\n"), 0o600)
	if _, err := tlsx.LoadKeyPair(tlsx.Options{CertFile: c.Cert, KeyFile: c.Key, KeyPasswordFile: pw}); err != nil {
		t.Errorf("loading the new pair: %v", err)
	}
	if _, err := certs.Client(dir, "gw-02", certs.Options{KeyPassword: "pw"}); err == nil {
		t.Error("replaced an existing client certificate")
	}
}

// TestRSA4096 is the one test that pays for a 4096-bit key.
func TestRSA4096(t *testing.T) {
	if testing.Short() {
		t.Skip("slow key generation")
	}
	f, err := certs.Init(certs.Options{Dir: t.TempDir(), ServerNames: []string{"localhost"}, KeyType: "rsa4096"})
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := readCert(t, f.Server.Cert).PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 4096 {
		t.Fatalf("server key %T", readCert(t, f.Server.Cert).PublicKey)
	}
}

func TestSnippets(t *testing.T) {
	f, err := certs.Init(certs.Options{Dir: t.TempDir(), ServerNames: []string{"localhost"}, ClientNames: []string{"gw-01"}})
	if err != nil {
		t.Fatal(err)
	}
	conf := certs.MosquittoListener(f, 8883)
	for _, line := range []string{"listener 8883\n", "cafile " + f.CA.Cert + "\n", "certfile " + f.Server.Cert + "\n",
		"keyfile " + f.Server.Key + "\n", "require_certificate true\n", "use_identity_as_username true\n", "tls_version tlsv1.2\n"} {
		if !strings.Contains(conf, line) {
			t.Errorf("mosquitto block lacks %q:\n%s", line, conf)
		}
	}
	f.KeyPasswordFile = "gwkey"
	var doc struct {
		Upstream struct {
			TLS map[string]string `toml:"tls"`
		} `toml:"upstream"`
	}
	block := certs.GatewayTLSBlock(f, "gw-01")
	if _, err := toml.Decode(block, &doc); err != nil {
		t.Fatalf("not TOML: %v\n%s", err, block)
	}
	c, _ := f.Client("gw-01")
	want := map[string]string{"cafile": f.CA.Cert, "certfile": c.Cert, "keyfile": c.Key, "keyfile_password_file": "gwkey"}
	for k, v := range want {
		if doc.Upstream.TLS[k] != v {
			t.Errorf("%s = %q, want %q", k, doc.Upstream.TLS[k], v)
		}
	}
}
