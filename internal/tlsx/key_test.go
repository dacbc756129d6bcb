package tlsx_test

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgegw/edgegw/internal/tlsx"
)

func openssl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadKeyOpenSSL: keys made by the real openssl, clear
// and encrypted in the legacy and the PKCS#8 forms, load with the right
// password and fail clearly with a wrong or missing one.
func TestLoadKeyOpenSSL(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	const pw = "correct horse"
	writeFile(t, p("pw"), pw+"\n")
	writeFile(t, p("wrong"), "battery staple\n")
	writeFile(t, p("pwcrlf"), pw+"\r\n")

	openssl(t, "genrsa", "-traditional", "-des3", "-passout", "pass:"+pw, "-out", p("rsa-des3.pem"), "2048")
	openssl(t, "rsa", "-traditional", "-in", p("rsa-des3.pem"), "-passin", "pass:"+pw, "-out", p("rsa1.pem"))
	openssl(t, "genrsa", "-des3", "-passout", "pass:"+pw, "-out", p("genrsa-des3-openssl3.pem"), "2048") // OpenSSL 3 writes PKCS#8 here
	openssl(t, "rsa", "-in", p("rsa1.pem"), "-aes256", "-traditional", "-passout", "pass:"+pw, "-out", p("rsa-aes256.pem"))
	openssl(t, "pkcs8", "-topk8", "-v2", "aes256", "-in", p("rsa1.pem"), "-passout", "pass:"+pw, "-out", p("rsa-pkcs8-aes256.pem"))
	openssl(t, "pkcs8", "-topk8", "-v2", "des3", "-v2prf", "hmacWithSHA1", "-in", p("rsa1.pem"), "-passout", "pass:"+pw, "-out", p("rsa-pkcs8-des3.pem"))
	openssl(t, "pkcs8", "-topk8", "-nocrypt", "-in", p("rsa1.pem"), "-out", p("rsa-pkcs8.pem"))
	openssl(t, "ecparam", "-name", "prime256v1", "-genkey", "-out", p("ec.pem"))
	openssl(t, "ec", "-in", p("ec.pem"), "-aes128", "-passout", "pass:"+pw, "-out", p("ec-aes128.pem"))
	openssl(t, "pkcs8", "-topk8", "-v2", "aes256", "-in", p("ec.pem"), "-passout", "pass:"+pw, "-out", p("ec-pkcs8-aes256.pem"))

	if head, _ := os.ReadFile(p("rsa-des3.pem")); !strings.Contains(string(head), "Proc-Type: 4,ENCRYPTED") {
		t.Fatalf("openssl did not write a legacy encrypted key:\n%s", head)
	}
	cases := []struct {
		file      string
		encrypted bool
		ec        bool
	}{
		{"rsa1.pem", false, false},
		{"rsa-pkcs8.pem", false, false},
		{"ec.pem", false, true},
		{"rsa-des3.pem", true, false},
		{"genrsa-des3-openssl3.pem", true, false},
		{"rsa-aes256.pem", true, false},
		{"rsa-pkcs8-aes256.pem", true, false},
		{"rsa-pkcs8-des3.pem", true, false},
		{"ec-aes128.pem", true, true},
		{"ec-pkcs8-aes256.pem", true, true},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			for _, pwFile := range []string{p("pw"), p("pwcrlf")} {
				k, err := tlsx.LoadKey(p(c.file), pwFile)
				if err != nil {
					t.Fatalf("right password: %v", err)
				}
				if _, isEC := k.(*ecdsa.PrivateKey); isEC != c.ec {
					t.Fatalf("got %T", k)
				}
				if _, isRSA := k.(*rsa.PrivateKey); !c.ec && !isRSA {
					t.Fatalf("got %T", k)
				}
			}
			if !c.encrypted {
				return
			}
			_, err := tlsx.LoadKey(p(c.file), p("wrong"))
			var pe *tlsx.KeyPasswordError
			if !errors.As(err, &pe) || pe.Missing || pe.KeyFile != p(c.file) {
				t.Fatalf("wrong password: got %v", err)
			}
			if !strings.Contains(err.Error(), "wrong password") || !strings.Contains(err.Error(), c.file) {
				t.Errorf("unclear message: %v", err)
			}
			_, err = tlsx.LoadKey(p(c.file), "")
			if !errors.As(err, &pe) || !pe.Missing {
				t.Fatalf("missing password: got %v", err)
			}
			if !strings.Contains(err.Error(), "encrypted") || !strings.Contains(err.Error(), "keyfile_password_file") {
				t.Errorf("unclear message: %v", err)
			}
		})
	}
}

func TestLoadKeyBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content, want string
	}{
		{"empty.pem", "", "no PEM data"},
		{"cert.pem", "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", "certificate rather than the key"},
		{"garbage.pem", "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n", "not a PKCS#1, PKCS#8 or EC private key"},
		{"badpkcs8.pem", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n", "malformed"},
	}
	pw := writeFile(t, filepath.Join(dir, "pw"), "x")
	for _, c := range cases {
		path := writeFile(t, filepath.Join(dir, c.name), c.content)
		_, err := tlsx.LoadKey(path, pw)
		var fe *tlsx.FileError
		if !errors.As(err, &fe) || fe.Path != path || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a FileError mentioning %q", c.name, err, c.want)
		}
	}
	_, err := tlsx.LoadKey(filepath.Join(dir, "absent.pem"), "")
	if err == nil || !strings.Contains(err.Error(), "absent.pem") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestEncryptPKCS8ReadByOpenSSL(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "ec.pem")
	openssl(t, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyPath)
	k, err := tlsx.LoadKey(keyPath, "")
	if err != nil {
		t.Fatal(err)
	}
	enc, err := tlsx.EncryptPKCS8(k, []byte("pw"), randReader{})
	if err != nil {
		t.Fatal(err)
	}
	encPath := writeFile(t, filepath.Join(dir, "enc.pem"), string(enc))
	openssl(t, "pkey", "-in", encPath, "-passin", "pass:pw", "-out", filepath.Join(dir, "dec.pem"))
	back, err := tlsx.LoadKey(filepath.Join(dir, "dec.pem"), "")
	if err != nil {
		t.Fatal(err)
	}
	if !back.(*ecdsa.PrivateKey).Equal(k) {
		t.Fatal("openssl decrypted a different key")
	}
	if out, err := exec.Command("openssl", "pkey", "-in", encPath, "-passin", "pass:nope", "-noout").CombinedOutput(); err == nil {
		t.Fatalf("openssl accepted a wrong password: %s", out)
	}
}

func TestResolvePasswordFile(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "/run/credentials/edgegw.service")
	for in, want := range map[string]string{
		"keypass":        "/run/credentials/edgegw.service/keypass",
		"./keypass":      "./keypass",
		"/etc/edgegw/pw": "/etc/edgegw/pw",
		"":               "",
	} {
		got, err := tlsx.ResolvePasswordFile(in)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := tlsx.ResolvePasswordFile("keypass"); err == nil || !strings.Contains(err.Error(), "CREDENTIALS_DIRECTORY") {
		t.Errorf("bare name without a credentials directory: %v", err)
	}
	// A systemd credential end to end.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "gwkey"), "sesame\n")
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	pw, err := tlsx.ReadPassword("gwkey")
	if err != nil || string(pw) != "sesame" {
		t.Fatalf("got %q, %v", pw, err)
	}
}
