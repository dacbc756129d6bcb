// Package certs makes the certificates an edgegw deployment needs: a CA, a
// server certificate for the upstream Mosquitto and one client certificate
// per gateway, with the classic mistakes made impossible (distinct subjects,
// a subjectAltName for every name, keys readable by their owner only).
//
// Concurrency: plain functions with no shared state. They block on key
// generation and on the disk; two of them must not write the same
// directory at once (the CLI runs one at a time).
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/edgegw/edgegw/internal/tlsx"
)

// Options says what to make.
type Options struct {
	Dir         string   // where the files go (created 0700 if missing)
	ServerNames []string // DNS names and IP addresses of the upstream broker; the first is the CN
	ClientNames []string // one client certificate per name (the CN, and the Mosquitto user name)
	KeyType     string   // "ecdsa" (P-256, default), "rsa2048" or "rsa4096"
	Days        int      // validity of server and client certificates (default 825); the CA gets 10 years or Days, whichever is longer
	KeyPassword string   // if set, the CA key and client keys are encrypted (PKCS#8, AES-256); the server key stays clear because Mosquitto cannot read a password at start
	Now         func() time.Time
	Overwrite   bool // replace an existing CA (every certificate it signed stops being trusted)
}

// DefaultDays is the validity of server and client certificates when
// Options.Days is zero.
const DefaultDays = 825

// Pair is one certificate and its key.
type Pair struct {
	Name string // CN
	Cert string // path of the PEM certificate
	Key  string // path of the PEM key (0600)
}

// Files lists what was written, by absolute path.
type Files struct {
	Dir     string
	CA      Pair
	Server  Pair // empty from Client
	Clients []Pair
	// KeyPasswordFile is not written by this package; a caller that stores
	// the key password in a file sets it so GatewayTLSBlock names it.
	KeyPasswordFile string
}

// Client returns the client pair called name, if any.
func (f Files) Client(name string) (Pair, bool) {
	for _, c := range f.Clients {
		if c.Name == name {
			return c, true
		}
	}
	return Pair{}, false
}

func (o *Options) defaults() error {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Days == 0 {
		o.Days = DefaultDays
	}
	if o.Days < 0 {
		return fmt.Errorf("certs: days %d must be positive", o.Days)
	}
	if o.KeyType == "" {
		o.KeyType = "ecdsa"
	}
	switch o.KeyType {
	case "ecdsa", "rsa2048", "rsa4096":
	default:
		return fmt.Errorf("certs: key type %q is not one of ecdsa, rsa2048, rsa4096", o.KeyType)
	}
	if o.Dir == "" {
		return errors.New("certs: no directory given")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	o.Dir = dir
	return nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$`)

// checkName rejects client names that cannot be a file name and a
// Mosquitto user name.
func checkName(kind, n string) error {
	if !nameRE.MatchString(n) || n == "ca" || n == "server" {
		return fmt.Errorf("certs: %s name %q must be letters, digits, '.', '_' or '-' (at most 63), and not \"ca\" or \"server\"", kind, n)
	}
	return nil
}

func checkServerName(n string) error {
	if net.ParseIP(n) != nil {
		return nil
	}
	if !regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`).MatchString(n) || len(n) > 253 {
		return fmt.Errorf("certs: server name %q is neither an IP address nor a DNS name", n)
	}
	return nil
}

// Init makes a new CA in o.Dir and with it a server certificate for
// o.ServerNames and a client certificate per o.ClientNames. It refuses to
// replace an existing CA unless o.Overwrite.
func Init(o Options) (Files, error) {
	if err := o.defaults(); err != nil {
		return Files{}, err
	}
	if len(o.ServerNames) == 0 {
		return Files{}, errors.New("certs: at least one server name (the upstream broker's DNS name or IP) is needed")
	}
	for _, n := range o.ServerNames {
		if err := checkServerName(n); err != nil {
			return Files{}, err
		}
	}
	for _, n := range o.ClientNames {
		if err := checkName("client", n); err != nil {
			return Files{}, err
		}
	}
	f := Files{Dir: o.Dir}
	f.CA = Pair{Cert: filepath.Join(o.Dir, "ca.crt"), Key: filepath.Join(o.Dir, "ca.key")}
	if !o.Overwrite {
		for _, p := range []string{f.CA.Cert, f.CA.Key} {
			if _, err := os.Stat(p); err == nil {
				return Files{}, fmt.Errorf("certs: %s exists; a new CA would make every certificate it signed untrusted. Use `edgegw certs client` to add a gateway, or ask to overwrite", p)
			}
		}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("certs: %w", err)
	}
	now := o.Now()
	caKey, err := newKey(o.KeyType)
	if err != nil {
		return Files{}, err
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return Files{}, fmt.Errorf("certs: %w", err)
	}
	caDays := 3650
	if o.Days > caDays {
		caDays = o.Days
	}
	caName := "edgegw CA " + hex.EncodeToString(suffix)
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: caName, Organization: []string{"edgegw"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Duration(caDays) * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, caCert, err := sign(caTmpl, caTmpl, caKey, caKey)
	if err != nil {
		return Files{}, err
	}
	f.CA.Name = caName
	if err := writePair(f.CA, caDER, caKey, o.KeyPassword); err != nil {
		return Files{}, err
	}
	server, err := issue(o, caCert, caKey, o.ServerNames[0], o.ServerNames, x509.ExtKeyUsageServerAuth, "")
	if err != nil {
		return Files{}, err
	}
	f.Server = server
	for _, n := range o.ClientNames {
		c, err := issue(o, caCert, caKey, n, []string{n}, x509.ExtKeyUsageClientAuth, o.KeyPassword)
		if err != nil {
			return Files{}, err
		}
		f.Clients = append(f.Clients, c)
	}
	return f, nil
}

// Client makes a client certificate called name, signed by the CA already
// in dir (ca.crt, ca.key; o.KeyPassword decrypts an encrypted CA key).
// Other fields of o (KeyType, Days, KeyPassword, Now) apply as in Init.
func Client(dir, name string, o Options) (Files, error) {
	o.Dir = dir
	if err := o.defaults(); err != nil {
		return Files{}, err
	}
	if err := checkName("client", name); err != nil {
		return Files{}, err
	}
	f := Files{Dir: o.Dir, CA: Pair{Cert: filepath.Join(o.Dir, "ca.crt"), Key: filepath.Join(o.Dir, "ca.key")}}
	caCerts, err := tlsx.LoadCAs(tlsx.Options{CAFile: f.CA.Cert})
	if err != nil {
		return Files{}, fmt.Errorf("certs: reading the CA: %w", err)
	}
	caCert := caCerts[0].Cert
	f.CA.Name = caCert.Subject.CommonName
	keyPEM, err := os.ReadFile(f.CA.Key)
	if err != nil {
		return Files{}, fmt.Errorf("certs: reading the CA key: %w", err)
	}
	caKey, err := tlsx.ParseKey(keyPEM, []byte(o.KeyPassword))
	if err != nil {
		return Files{}, fmt.Errorf("certs: CA key %s: %w", f.CA.Key, err)
	}
	signer, ok := caKey.(crypto.Signer)
	if !ok || !signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(caCert.PublicKey) {
		return Files{}, fmt.Errorf("certs: %s is not the key of %s", f.CA.Key, f.CA.Cert)
	}
	p := filepath.Join(o.Dir, name+".crt")
	if _, err := os.Stat(p); err == nil && !o.Overwrite {
		return Files{}, fmt.Errorf("certs: %s exists; remove it first to make a new one", p)
	}
	c, err := issue(o, caCert, signer, name, []string{name}, x509.ExtKeyUsageClientAuth, o.KeyPassword)
	if err != nil {
		return Files{}, err
	}
	f.Clients = []Pair{c}
	return f, nil
}

func newKey(typ string) (crypto.Signer, error) {
	var k crypto.Signer
	var err error
	switch typ {
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa4096":
		k, err = rsa.GenerateKey(rand.Reader, 4096)
	default:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("certs: generating a %s key: %w", typ, err)
	}
	return k, nil
}

func sign(tmpl, parent *x509.Certificate, pub, parentKey crypto.Signer) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	tmpl.SerialNumber = serial
	pkDER, err := x509.MarshalPKIXPublicKey(pub.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	ski := sha1.Sum(pkDER)
	tmpl.SubjectKeyId = ski[:]
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub.Public(), parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: signing %q: %w", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	return der, c, nil
}

// issue makes a leaf called cn with SANs for names, signed by the CA, and
// writes <cn>.crt/.key (server.crt/.key for a server certificate).
func issue(o Options, ca *x509.Certificate, caKey crypto.Signer, cn string, names []string, usage x509.ExtKeyUsage, password string) (Pair, error) {
	key, err := newKey(o.KeyType)
	if err != nil {
		return Pair{}, err
	}
	now := o.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"edgegw"}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(time.Duration(o.Days) * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if checkServerName(n) == nil {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, _, err := sign(tmpl, ca, key, caKey)
	if err != nil {
		return Pair{}, err
	}
	base := cn
	if usage == x509.ExtKeyUsageServerAuth {
		base = "server"
	}
	p := Pair{Name: cn, Cert: filepath.Join(o.Dir, base+".crt"), Key: filepath.Join(o.Dir, base+".key")}
	if err := writePair(p, der, key, password); err != nil {
		return Pair{}, err
	}
	return p, nil
}

func writePair(p Pair, certDER []byte, key crypto.Signer, password string) error {
	var keyPEM []byte
	if password != "" {
		var err error
		if keyPEM, err = tlsx.EncryptPKCS8(key, []byte(password), rand.Reader); err != nil {
			return fmt.Errorf("certs: %w", err)
		}
	} else {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("certs: %w", err)
		}
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	if err := writeFile(p.Key, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(p.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644)
}

// writeFile writes through a temporary file and a rename, so a reader (a
// gateway reloading its certificate) never sees half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("certs: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}
