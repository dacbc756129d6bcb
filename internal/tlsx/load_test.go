package tlsx_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/tlsx"
)

func initCerts(t *testing.T, o certs.Options) certs.Files {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.ServerNames == nil {
		o.ServerNames = []string{"localhost", "127.0.0.1"}
	}
	f, err := certs.Init(o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// handshake runs one TLS handshake between client and server configs over
// a real loopback socket and returns the CN the server saw.
func handshake(t *testing.T, server, client *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type result struct {
		cn  string
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			got <- result{err: err}
			return
		}
		st := tc.ConnectionState()
		if len(st.PeerCertificates) == 0 {
			got <- result{}
			return
		}
		got <- result{cn: st.PeerCertificates[0].Subject.CommonName}
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), client)
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	defer c.Close()
	r := <-got
	if r.err != nil {
		t.Fatalf("server handshake: %v", r.err)
	}
	return r.cn
}

// TestClientCertificateReloaded shows a replaced certificate and key being
// used on the next handshake with the same *tls.Config, no restart.
func TestClientCertificateReloaded(t *testing.T) {
	f := initCerts(t, certs.Options{ClientNames: []string{"gw-01"}})
	srv, err := tlsx.ServerConfig(tlsx.Options{CAFile: f.CA.Cert, CertFile: f.Server.Cert, KeyFile: f.Server.Key}, true)
	if err != nil {
		t.Fatal(err)
	}
	// The gateway's files live in their own directory, as in /etc/edgegw.
	etc := t.TempDir()
	c1, _ := f.Client("gw-01")
	cert, key := filepath.Join(etc, "client.crt"), filepath.Join(etc, "client.key")
	copyFile(t, c1.Cert, cert)
	copyFile(t, c1.Key, key)
	var logs bytes.Buffer
	cli, err := tlsx.ClientConfig(tlsx.Options{CAFile: f.CA.Cert, CertFile: cert, KeyFile: key}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if cn := handshake(t, srv, cli); cn != "gw-01" {
		t.Fatalf("first handshake presented %q", cn)
	}
	f2, err := certs.Client(f.Dir, "gw-renewed", certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := f2.Client("gw-renewed")
	// A half-done replacement (new certificate, old key) keeps the old pair.
	copyFile(t, c2.Cert, cert)
	if cn := handshake(t, srv, cli); cn != "gw-01" {
		t.Fatalf("during replacement presented %q", cn)
	}
	if !strings.Contains(logs.String(), "do not load") {
		t.Errorf("no warning about the half-replaced pair: %s", logs.String())
	}
	copyFile(t, c2.Key, key)
	if cn := handshake(t, srv, cli); cn != "gw-renewed" {
		t.Fatalf("after replacement presented %q", cn)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// Make the change visible even within one mtime tick.
	_ = os.Chtimes(tmp, time.Now(), time.Now().Add(time.Duration(len(data))*time.Millisecond))
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

func TestInsecureWarnsEveryTime(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for i := 0; i < 2; i++ {
		cfg, err := tlsx.ClientConfig(tlsx.Options{Insecure: true}, log)
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.InsecureSkipVerify {
			t.Fatal("insecure not applied")
		}
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"INSECURE"); n != 2 {
		t.Fatalf("want 2 warnings, got %d: %s", n, logs.String())
	}
}

func TestCAPathAndMistakes(t *testing.T) {
	f := initCerts(t, certs.Options{ClientNames: []string{"gw-01"}})
	capath := t.TempDir()
	copyFile(t, f.CA.Cert, filepath.Join(capath, "edgegw-ca.pem"))
	if out, err := exec.Command("openssl", "rehash", capath).CombinedOutput(); err != nil {
		t.Fatalf("openssl rehash: %v %s", err, out)
	}
	writeFile(t, filepath.Join(capath, "README"), "not a certificate\n")
	cas, err := tlsx.LoadCAs(tlsx.Options{CAPath: capath})
	if err != nil || len(cas) != 1 || cas[0].Cert.Subject.CommonName != f.CA.Name {
		t.Fatalf("capath: %v %v", cas, err)
	}
	srv, err := tlsx.ServerConfig(tlsx.Options{CAPath: capath, CertFile: f.Server.Cert, KeyFile: f.Server.Key}, true)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := f.Client("gw-01")
	cli, err := tlsx.ClientConfig(tlsx.Options{CAPath: capath, CertFile: c.Cert, KeyFile: c.Key, MinVersion: "1.3"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cn := handshake(t, srv, cli); cn != "gw-01" {
		t.Fatalf("capath handshake presented %q", cn)
	}

	var isDir *tlsx.CAFileIsDirError
	if _, err := tlsx.ClientConfig(tlsx.Options{CAFile: capath}, nil); !errors.As(err, &isDir) {
		t.Errorf("cafile directory: %v", err)
	}
	var isFile *tlsx.CAPathIsFileError
	if _, err := tlsx.ClientConfig(tlsx.Options{CAPath: f.CA.Cert}, nil); !errors.As(err, &isFile) {
		t.Errorf("capath file: %v", err)
	}
	var fe *tlsx.FileError
	if _, err := tlsx.ClientConfig(tlsx.Options{CAFile: f.Server.Key}, nil); !errors.As(err, &fe) || fe.What != "cafile" {
		t.Errorf("key as cafile: %v", err)
	}
	if _, err := tlsx.ClientConfig(tlsx.Options{MinVersion: "1.1"}, nil); err == nil || !strings.Contains(err.Error(), "1.1") {
		t.Errorf("tls 1.1: %v", err)
	}
	if _, err := tlsx.ClientConfig(tlsx.Options{CertFile: c.Cert}, nil); err == nil {
		t.Error("certfile without keyfile accepted")
	}
	var km *tlsx.KeyMismatchError
	if _, err := tlsx.ClientConfig(tlsx.Options{CertFile: c.Cert, KeyFile: f.Server.Key}, nil); !errors.As(err, &km) {
		t.Errorf("mismatched key: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	now := time.Now()
	f := initCerts(t, certs.Options{ClientNames: []string{"gw-01"}, Days: 20})
	c, _ := f.Client("gw-01")
	infos, err := tlsx.Expiry(tlsx.Options{CAFile: f.CA.Cert, CertFile: c.Cert, KeyFile: c.Key})
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		t.Fatalf("got %d entries", len(infos))
	}
	if infos[0].Path != c.Cert || infos[0].DaysLeft != 19 || !strings.Contains(infos[0].Subject, "gw-01") {
		t.Errorf("client: %+v", infos[0])
	}
	if infos[1].Path != f.CA.Cert || infos[1].DaysLeft < 3649 || infos[1].NotAfter.Before(now) {
		t.Errorf("CA: %+v", infos[1])
	}
}
