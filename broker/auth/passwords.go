// Package auth gives the local broker Mosquitto's security files: a
// password_file (as mosquitto_passwd writes it) and an acl_file, as a
// Policy the broker's access hook asks. It knows nothing of mochi: the
// broker hands it plain values (Client, user and topic names).
//
// Concurrency: everything here is read-only once loaded; see Policy.
package auth

import (
	"bufio"
	"crypto/pbkdf2"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Passwords holds the users of a Mosquitto password file.
type Passwords struct {
	path  string
	users map[string]passwordHash
}

// passwordHash is one user's entry: $6$ (SHA-512 of password and salt) or
// $7$ (PBKDF2-HMAC-SHA512, as mosquitto_passwd 2.x writes).
type passwordHash struct {
	kind       int // 6 or 7
	iterations int
	salt, hash []byte
}

// LoadPasswordFile reads a Mosquitto password file: one `user:hash` per
// line, where hash is `$7$iterations$salt$hash` or `$6$salt$hash` (salt and
// hash in base64). Blank lines and lines starting with # are skipped.
// Errors name the file and line; a clear-text password (a file that was
// never run through `mosquitto_passwd -U`) is an error too.
func LoadPasswordFile(path string) (*Passwords, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: password_file: %w", err)
	}
	defer f.Close()
	p := &Passwords{path: path, users: map[string]passwordHash{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), " \t\r")
		if text == "" || strings.HasPrefix(strings.TrimSpace(text), "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("auth: %s:%d: expected user:hash", path, line)
		}
		h, err := parseHash(hash)
		if err != nil {
			return nil, fmt.Errorf("auth: %s:%d: user %q: %w", path, line, user, err)
		}
		if _, dup := p.users[user]; dup {
			return nil, fmt.Errorf("auth: %s:%d: user %q appears twice", path, line, user)
		}
		p.users[user] = h
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: %s:%d: %w", path, line+1, err)
	}
	return p, nil
}

func b64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func parseHash(s string) (passwordHash, error) {
	parts := strings.Split(s, "$")
	switch {
	case len(parts) == 4 && parts[0] == "" && parts[1] == "6":
		salt, err1 := b64(parts[2])
		hash, err2 := b64(parts[3])
		if err1 != nil || err2 != nil || len(hash) != sha512.Size {
			return passwordHash{}, fmt.Errorf("malformed $6$ hash (want $6$<base64 salt>$<base64 SHA-512>)")
		}
		return passwordHash{kind: 6, salt: salt, hash: hash}, nil
	case len(parts) == 5 && parts[0] == "" && parts[1] == "7":
		it, err := strconv.Atoi(parts[2])
		if err != nil || it < 1 || it > 10_000_000 {
			return passwordHash{}, fmt.Errorf("malformed $7$ hash: iteration count %q", parts[2])
		}
		salt, err1 := b64(parts[3])
		hash, err2 := b64(parts[4])
		if err1 != nil || err2 != nil || len(hash) == 0 {
			return passwordHash{}, fmt.Errorf("malformed $7$ hash (want $7$<iterations>$<base64 salt>$<base64 hash>)")
		}
		return passwordHash{kind: 7, iterations: it, salt: salt, hash: hash}, nil
	case len(parts) > 1 && parts[0] == "" && (parts[1] == "6" || parts[1] == "7"):
		return passwordHash{}, fmt.Errorf("malformed $%s$ hash: wrong number of $-separated fields", parts[1])
	case !strings.HasPrefix(s, "$"):
		return passwordHash{}, fmt.Errorf("the password is not hashed; run `mosquitto_passwd -U FILE` to hash the file")
	}
	return passwordHash{}, fmt.Errorf("unsupported hash %q (mosquitto_passwd writes $7$ or $6$)", strings.Join(parts[:min(2, len(parts))], "$")+"$")
}

func (h passwordHash) sum(password []byte) []byte {
	switch h.kind {
	case 6:
		d := sha512.New()
		d.Write(password)
		d.Write(h.salt)
		return d.Sum(nil)
	default:
		k, err := pbkdf2.Key(sha512.New, string(password), h.salt, h.iterations, len(h.hash))
		if err != nil {
			return nil
		}
		return k
	}
}

// dummy is hashed for unknown users so that a wrong user name takes as
// long as a wrong password.
var dummy = passwordHash{kind: 7, iterations: 101, salt: make([]byte, 12), hash: make([]byte, 64)}

// Check reports whether password is user's, in time that does not depend
// on how much of it matched nor on whether the user exists.
func (p *Passwords) Check(user string, password []byte) bool {
	h, known := p.users[user]
	if !known {
		h = dummy
	}
	ok := subtle.ConstantTimeCompare(h.sum(password), h.hash) == 1
	return ok && known
}

// Len returns the number of users.
func (p *Passwords) Len() int { return len(p.users) }
