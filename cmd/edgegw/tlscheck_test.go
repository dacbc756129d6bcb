package main

import (
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/tlsx"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// connackServer is a TLS server requiring client certificates from
// cafile that answers one CONNECT per connection with CONNACK accepted.
func connackServer(t *testing.T, dir string) string {
	t.Helper()
	cfg, err := tlsx.ServerConfig(tlsx.Options{CAFile: filepath.Join(dir, "ca.crt"),
		CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key")}, true)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 256)); err == nil {
				_, _ = c.Write([]byte{0x20, 2, 0, 0})
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

func TestCertsAndTLSCheckCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI("certs", "init", "--dir", dir, "--server-name", "localhost", "--server-name", "127.0.0.1",
		"--client-name", "gw-01", "--key-password-file", pwFile)
	if code != exitOK {
		t.Fatalf("certs init: %d %s", code, errs)
	}
	for _, want := range []string{"require_certificate true", "use_identity_as_username true", "[upstream.tls]",
		`keyfile_password_file = "` + pwFile + `"`, filepath.Join(dir, "gw-01.key")} {
		if !strings.Contains(out, want) {
			t.Errorf("certs init output lacks %q:\n%s", want, out)
		}
	}
	if code, _, errs := runCLI("certs", "init", "--dir", dir, "--server-name", "x", "--client-name", "y"); code != exitFailure || !strings.Contains(errs, "exists") {
		t.Errorf("second init: %d %s", code, errs)
	}
	if code, _, _ := runCLI("certs", "init", "--dir", dir); code != exitUsage {
		t.Errorf("init without names: %d", code)
	}
	code, out, errs = runCLI("certs", "client", "gw-02", "--dir", dir, "--key-password-file", pwFile)
	if code != exitOK || !strings.Contains(out, "gw-02.crt") {
		t.Fatalf("certs client: %d %s %s", code, out, errs)
	}

	addr := connackServer(t, dir)
	check := []string{"tls-check", "--address", addr, "--cafile", filepath.Join(dir, "ca.crt"),
		"--certfile", filepath.Join(dir, "gw-02.crt"), "--keyfile", filepath.Join(dir, "gw-02.key")}
	code, out, errs = runCLI(append(check, "--key-password-file", pwFile)...)
	if code != exitOK || !strings.HasPrefix(out, "OK: ") || !strings.Contains(out, "TLS 1.3") || !strings.Contains(out, "CN=gw-02") {
		t.Fatalf("tls-check: %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCLI(check...)
	if code != exitFailure || !strings.Contains(out, "FAIL [key_password]") || !strings.Contains(out, "hint: ") {
		t.Fatalf("tls-check without the key password: %d\n%s", code, out)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	code, out, _ = runCLI("tls-check", "--address", closed, "--cafile", filepath.Join(dir, "ca.crt"))
	if code != exitFailure || !strings.Contains(out, "FAIL [refused]") {
		t.Fatalf("tls-check on a closed port: %d\n%s", code, out)
	}
	if code, _, _ := runCLI("tls-check"); code != exitUsage {
		t.Errorf("tls-check without an address: %d", code)
	}
}
