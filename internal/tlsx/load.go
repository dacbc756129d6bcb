package tlsx

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// CAFileEntry is one CA certificate with the file it came from.
type CAFileEntry struct {
	Path string
	Cert *x509.Certificate
}

// LoadCAs reads the CA certificates named by o.CAFile and o.CAPath. A
// directory given as cafile is a *CAFileIsDirError, a file given as capath a
// *CAPathIsFileError. In capath every regular file holding PEM certificates
// counts (*.crt, *.pem and the c_rehash links alike); other files are skipped.
func LoadCAs(o Options) ([]CAFileEntry, error) {
	var out []CAFileEntry
	if o.CAFile != "" {
		fi, err := os.Stat(o.CAFile)
		if err != nil {
			return nil, &FileError{What: "cafile", Path: o.CAFile, Err: err}
		}
		if fi.IsDir() {
			return nil, &CAFileIsDirError{Path: o.CAFile}
		}
		certs, err := readCerts(o.CAFile)
		if err != nil {
			return nil, &FileError{What: "cafile", Path: o.CAFile, Err: err}
		}
		for _, c := range certs {
			out = append(out, CAFileEntry{Path: o.CAFile, Cert: c})
		}
	}
	if o.CAPath != "" {
		fi, err := os.Stat(o.CAPath)
		if err != nil {
			return nil, &FileError{What: "capath", Path: o.CAPath, Err: err}
		}
		if !fi.IsDir() {
			return nil, &CAPathIsFileError{Path: o.CAPath}
		}
		entries, err := os.ReadDir(o.CAPath)
		if err != nil {
			return nil, &FileError{What: "capath", Path: o.CAPath, Err: err}
		}
		n := 0
		seen := map[string]bool{}
		for _, e := range entries {
			p := filepath.Join(o.CAPath, e.Name())
			if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
				continue
			}
			certs, err := readCerts(p)
			if err != nil {
				continue
			}
			for _, c := range certs {
				if seen[string(c.Raw)] { // c_rehash links repeat the same file
					continue
				}
				seen[string(c.Raw)] = true
				out = append(out, CAFileEntry{Path: p, Cert: c})
				n++
			}
		}
		if n == 0 {
			return nil, &FileError{What: "capath", Path: o.CAPath, Err: errors.New("no PEM CA certificate in this directory")}
		}
	}
	return out, nil
}

// readCerts returns every certificate in a PEM file.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if len(data) > 0 && data[0] == 0x30 {
			return nil, errors.New("no PEM certificate found (the file looks like DER; convert it with `openssl x509 -inform der -in FILE -out FILE.pem`)")
		}
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

// LoadKeyPair reads o.CertFile and o.KeyFile (decrypting the key with
// o.KeyPasswordFile when needed) and checks that they belong together; a
// key that is not the certificate's is a *KeyMismatchError.
func LoadKeyPair(o Options) (*tls.Certificate, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, fmt.Errorf("tlsx: certfile and keyfile go together; set both or neither")
	}
	certs, err := readCerts(o.CertFile)
	if err != nil {
		return nil, &FileError{What: "certfile", Path: o.CertFile, Err: err}
	}
	key, err := LoadKey(o.KeyFile, o.KeyPasswordFile)
	if err != nil {
		return nil, err
	}
	pub, ok := key.(interface{ Public() crypto.PublicKey })
	if !ok {
		return nil, &FileError{What: "keyfile", Path: o.KeyFile, Err: fmt.Errorf("unsupported key type %T", key)}
	}
	eq, ok := pub.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !eq.Equal(certs[0].PublicKey) {
		return nil, &KeyMismatchError{CertFile: o.CertFile, KeyFile: o.KeyFile}
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, x := range certs {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// reloader hands out the key pair, reading the files again when either
// changed (size or modification time), so a replaced certificate is used on
// the next handshake. If the new files do not load (a half-written
// replacement), it keeps the last good pair and logs why.
type reloader struct {
	o   Options
	log *slog.Logger

	mu    sync.Mutex
	stamp string
	cert  *tls.Certificate
}

func newReloader(o Options, log *slog.Logger) (*reloader, error) {
	r := &reloader{o: o, log: log}
	stamp := r.fileStamp()
	c, err := LoadKeyPair(o)
	if err != nil {
		return nil, err
	}
	r.stamp, r.cert = stamp, c
	return r, nil
}

func (r *reloader) fileStamp() string {
	s := ""
	for _, p := range []string{r.o.CertFile, r.o.KeyFile} {
		fi, err := os.Stat(p)
		if err != nil {
			return "missing"
		}
		s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s
}

func (r *reloader) get() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp := r.fileStamp()
	if stamp == r.stamp {
		return r.cert, nil
	}
	c, err := LoadKeyPair(r.o)
	if err != nil {
		r.log.Warn("certificate files changed but do not load; using the previous certificate",
			"certfile", r.o.CertFile, "keyfile", r.o.KeyFile, "err", err)
		return r.cert, nil
	}
	r.log.Info("loaded the replaced certificate", "certfile", r.o.CertFile,
		"subject", c.Leaf.Subject.String(), "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	r.stamp, r.cert = stamp, c
	return c, nil
}

func certPool(o Options) (*x509.CertPool, error) {
	if o.CAFile == "" && o.CAPath == "" {
		return nil, nil // the system's roots
	}
	cas, err := LoadCAs(o)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c.Cert)
	}
	return pool, nil
}

// ClientConfig builds the TLS configuration for the upstream connection.
// Without cafile/capath the system's roots are trusted. The client
// certificate is handed out through GetClientCertificate and read again
// when its files change, so a renewed certificate is used on the next
// reconnect without a restart. ServerName is left empty unless set, so
// tls.Dial checks the host of the address. With Insecure every call logs a
// warning.
func ClientConfig(o Options, log *slog.Logger) (*tls.Config, error) {
	if log == nil {
		log = slog.Default()
	}
	minV, err := o.TLSVersion()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: minV, ServerName: o.ServerName}
	if o.Insecure {
		log.Warn("INSECURE: upstream TLS certificate verification is OFF (insecure = true); anyone on the path can read and change the traffic. Set cafile and remove insecure.",
			"cafile", o.CAFile, "capath", o.CAPath)
		cfg.InsecureSkipVerify = true
	}
	if cfg.RootCAs, err = certPool(o); err != nil {
		return nil, err
	}
	if o.CertFile != "" || o.KeyFile != "" {
		r, err := newReloader(o, log)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.get()
		}
	}
	return cfg, nil
}

// ServerConfig builds the TLS configuration of the local broker's TLS
// listener: certfile/keyfile are the server's (read again when they change),
// cafile/capath the CAs that sign client certificates. With
// requireClientCert a client must present a certificate signed by them;
// otherwise one is verified if given.
func ServerConfig(o Options, requireClientCert bool) (*tls.Config, error) {
	minV, err := o.TLSVersion()
	if err != nil {
		return nil, err
	}
	r, err := newReloader(o, slog.Default())
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: minV,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.get()
		},
	}
	if cfg.ClientCAs, err = certPool(o); err != nil {
		return nil, err
	}
	switch {
	case requireClientCert && cfg.ClientCAs == nil:
		return nil, fmt.Errorf("tlsx: require_certificate needs cafile or capath with the CA that signs client certificates")
	case requireClientCert:
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	case cfg.ClientCAs != nil:
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// CertInfo describes one certificate's lifetime.
type CertInfo struct {
	Path     string
	Subject  string
	Issuer   string
	NotAfter time.Time
	DaysLeft int // whole days until NotAfter; negative once expired
}

// Expiry returns the lifetime of our certificate (certfile) and of every CA
// in cafile/capath, soonest expiry first. The gateway warns below 30 days.
func Expiry(o Options) ([]CertInfo, error) {
	return expiryAt(o, time.Now())
}

func expiryAt(o Options, now time.Time) ([]CertInfo, error) {
	var out []CertInfo
	add := func(path string, c *x509.Certificate) {
		left := c.NotAfter.Sub(now)
		days := int(left / (24 * time.Hour))
		if left < 0 && left%(24*time.Hour) != 0 {
			days-- // floor, so a certificate expired an hour ago has -1 days left
		}
		out = append(out, CertInfo{Path: path, Subject: c.Subject.String(), Issuer: c.Issuer.String(),
			NotAfter: c.NotAfter, DaysLeft: days})
	}
	if o.CertFile != "" {
		certs, err := readCerts(o.CertFile)
		if err != nil {
			return nil, &FileError{What: "certfile", Path: o.CertFile, Err: err}
		}
		add(o.CertFile, certs[0])
	}
	if o.CAFile != "" || o.CAPath != "" {
		cas, err := LoadCAs(o)
		if err != nil {
			return nil, err
		}
		for _, c := range cas {
			add(c.Path, c.Cert)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].NotAfter.Before(out[j].NotAfter) })
	return out, nil
}
