package auth_test

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgegw/edgegw/broker/auth"
	"github.com/edgegw/edgegw/internal/testenv"
)

// sixLine makes a $6$ entry by hand: SHA-512 of password then salt.
func sixLine(user, password string) string {
	salt := make([]byte, 12)
	_, _ = rand.Read(salt)
	sum := sha512.Sum512(append([]byte(password), salt...))
	return user + ":$6$" + base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(sum[:])
}

func mosquittoPasswd(t *testing.T, args ...string) {
	t.Helper()
	testenv.Tools(t, "mosquitto", "mosquitto_passwd")
	if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd %v: %v\n%s", args, err, out)
	}
}

// passwordFile writes a file with users made by the real mosquitto_passwd
// (alice, bob: $7$) and a hand-made $6$ line (carol).
func passwordFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "passwd")
	mosquittoPasswd(t, "-c", "-b", path, "alice", "alice-secret")
	mosquittoPasswd(t, "-b", path, "bob", "bob secret with spaces")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("# a comment\n\n" + sixLine("carol", "carol-pw") + "\n"); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPasswordFileFromMosquittoPasswd(t *testing.T) {
	path := passwordFile(t)
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "alice:$7$") {
		t.Fatalf("mosquitto_passwd did not write $7$:\n%s", data)
	}
	p, err := auth.LoadPasswordFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 3 {
		t.Fatalf("%d users", p.Len())
	}
	cases := []struct {
		user, pw string
		ok       bool
	}{
		{"alice", "alice-secret", true},
		{"alice", "alice-secreT", false},
		{"alice", "", false},
		{"bob", "bob secret with spaces", true},
		{"bob", "alice-secret", false},
		{"carol", "carol-pw", true},
		{"carol", "carol-pw ", false},
		{"mallory", "alice-secret", false},
		{"", "", false},
	}
	for _, c := range cases {
		if got := p.Check(c.user, []byte(c.pw)); got != c.ok {
			t.Errorf("Check(%q, %q) = %v, want %v", c.user, c.pw, got, c.ok)
		}
	}
}

func TestPasswordFileErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ content, want string }{
		{"alice:$7$101$c2FsdA==\n", ":1: user \"alice\": malformed $7$"},
		{"# ok\nbob:plaintext\n", ":2: user \"bob\": the password is not hashed; run `mosquitto_passwd -U"},
		{"nocolon\n", ":1: expected user:hash"},
		{"x:$5$abc$def\n", ":1: user \"x\": unsupported hash"},
		{"x:$6$!!$!!\n", "malformed $6$"},
		{sixLine("d", "1") + "\n" + sixLine("d", "2") + "\n", ":2: user \"d\" appears twice"},
	}
	for i, c := range cases {
		path := filepath.Join(dir, "p"+string(rune('a'+i)))
		os.WriteFile(path, []byte(c.content), 0o600)
		_, err := auth.LoadPasswordFile(path)
		if err == nil || !strings.Contains(err.Error(), path+c.want) && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.content, err, c.want)
		}
		if err != nil && !strings.Contains(err.Error(), path) {
			t.Errorf("error does not name the file: %v", err)
		}
	}
}

func BenchmarkCheck7(b *testing.B) {
	path := filepath.Join(b.TempDir(), "passwd")
	if out, err := exec.Command("mosquitto_passwd", "-c", "-b", path, "alice", "pw").CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	p, err := auth.LoadPasswordFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		p.Check("alice", []byte("pw"))
	}
}
