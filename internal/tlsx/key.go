package tlsx

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LoadKey reads a PEM private key: PKCS#1 ("RSA PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") or PKCS#8 ("PRIVATE KEY"), either in clear or encrypted
// with a password read from passwordFile: the legacy OpenSSL form
// ("Proc-Type: 4,ENCRYPTED", as `openssl genrsa -des3` writes) and encrypted
// PKCS#8 ("ENCRYPTED PRIVATE KEY", PBES2 with PBKDF2, as
// `openssl pkcs8 -topk8 -v2 aes256` writes). passwordFile goes through
// ResolvePasswordFile. A missing or wrong password is a *KeyPasswordError.
func LoadKey(path, passwordFile string) (crypto.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &FileError{What: "keyfile", Path: path, Err: err}
	}
	key, err := parseKeyPEM(data, func() ([]byte, error) {
		if passwordFile == "" {
			return nil, nil
		}
		return ReadPassword(passwordFile)
	})
	if err != nil {
		var pe *KeyPasswordError
		if errors.As(err, &pe) {
			pe.KeyFile = path
			return nil, pe
		}
		var fe *FileError
		if errors.As(err, &fe) {
			return nil, err
		}
		return nil, &FileError{What: "keyfile", Path: path, Err: err}
	}
	return key, nil
}

// ParseKey is LoadKey for PEM data in memory with the password itself
// (nil when there is none).
func ParseKey(pemData, password []byte) (crypto.PrivateKey, error) {
	return parseKeyPEM(pemData, func() ([]byte, error) { return password, nil })
}

func parseKeyPEM(data []byte, password func() ([]byte, error)) (crypto.PrivateKey, error) {
	block, err := keyBlock(data)
	if err != nil {
		return nil, err
	}
	//lint:ignore SA1019 legacy "Proc-Type: 4,ENCRYPTED" keys (openssl genrsa -des3 -traditional) must still load
	encrypted := block.Type == "ENCRYPTED PRIVATE KEY" || x509.IsEncryptedPEMBlock(block)
	if !encrypted {
		return parseKeyDER(block.Type, block.Bytes)
	}
	pw, err := password()
	if err != nil {
		return nil, err
	}
	if len(pw) == 0 {
		return nil, &KeyPasswordError{Missing: true}
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" {
		return DecryptPKCS8(block.Bytes, pw)
	}
	//lint:ignore SA1019 legacy "Proc-Type: 4,ENCRYPTED" keys must still load; nothing else decrypts them
	der, err := x509.DecryptPEMBlock(block, pw)
	if err != nil {
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, &KeyPasswordError{}
		}
		return nil, err
	}
	key, err := parseKeyDER(block.Type, der)
	if err != nil {
		// The padding check passes by chance for about one wrong password
		// in 256; the DER then does not parse.
		return nil, &KeyPasswordError{}
	}
	return key, nil
}

// keyBlock returns the first PEM block that holds a private key, skipping
// "EC PARAMETERS" and certificates that may share the file.
func keyBlock(data []byte) (*pem.Block, error) {
	rest := data
	sawPEM := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			return block, nil
		}
	}
	if !sawPEM {
		return nil, errors.New("no PEM data found (is it a DER file? convert it with `openssl pkey -in KEY -out KEY.pem`)")
	}
	return nil, errors.New("no PEM block of type PRIVATE KEY found (is this the certificate rather than the key?)")
}

func parseKeyDER(typ string, der []byte) (crypto.PrivateKey, error) {
	switch typ {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(der)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(der)
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("PEM block %q is not a PKCS#1, PKCS#8 or EC private key", typ)
}

// ResolvePasswordFile returns the path of a password file. A bare name (no
// slash) names a systemd credential (LoadCredential=NAME:/path in the unit)
// and resolves under $CREDENTIALS_DIRECTORY; anything else is a path.
func ResolvePasswordFile(p string) (string, error) {
	if p == "" || strings.ContainsRune(p, '/') {
		return p, nil
	}
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return "", &FileError{What: "keyfile_password_file", Path: p,
			Err: errors.New("a bare name means a systemd credential, but $CREDENTIALS_DIRECTORY is not set (add LoadCredential= to the unit, or write ./" + p + " for a file in the current directory)")}
	}
	return filepath.Join(dir, p), nil
}

// ReadPassword reads a password file (after ResolvePasswordFile): its first
// line, without the line ending.
func ReadPassword(passwordFile string) ([]byte, error) {
	path, err := ResolvePasswordFile(passwordFile)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &FileError{What: "keyfile_password_file", Path: path, Err: err}
	}
	if i := strings.IndexByte(string(data), '\n'); i >= 0 {
		data = data[:i]
	}
	data = []byte(strings.TrimSuffix(string(data), "\r"))
	if len(data) == 0 {
		return nil, &FileError{What: "keyfile_password_file", Path: path, Err: errors.New("the file is empty")}
	}
	return data, nil
}
