// Package tlsx loads the TLS material edgegw uses: CA certificates (a file or
// a directory), client and server certificates, and private keys in every
// PEM form operators meet, including password-encrypted ones.
//
// Errors are typed (see errors.go) so that package tlsdiag can name the cause
// of a failure in plain words without matching strings.
//
// Concurrency: loading blocks on file reads (and on decrypting an
// encrypted key). A client configuration's certificate callback runs on
// the handshake's goroutine: under its own mutex it stats the two files and
// loads them again only when they changed, so it costs two stats per
// handshake and never waits for the network.
package tlsx

import (
	"crypto/tls"
	"fmt"
)

// Options is the TLS part of a configuration: the `[upstream.tls]` and
// `[broker.tls]` tables map onto it one to one.
type Options struct {
	CAFile          string // PEM file with one or more CA certificates
	CAPath          string // directory of PEM CA certificates
	CertFile        string // our certificate (PEM); the chain may follow the leaf
	KeyFile         string // our private key (PEM, possibly encrypted)
	KeyPasswordFile string // file holding the key's password; a bare name is a systemd credential
	MinVersion      string // "1.2" (default) or "1.3"
	ServerName      string // overrides the name checked against the server certificate
	Insecure        bool   // skip verification of the server certificate (loudly logged)
}

// TLSVersion returns the crypto/tls constant for o.MinVersion, which may be
// empty (TLS 1.2), "1.2", "1.3", or the Mosquitto spellings "tlsv1.2" and
// "tlsv1.3".
func (o Options) TLSVersion() (uint16, error) {
	switch o.MinVersion {
	case "", "1.2", "tlsv1.2":
		return tls.VersionTLS12, nil
	case "1.3", "tlsv1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tlsx: tls_version %q is not supported; use \"1.2\" or \"1.3\"", o.MinVersion)
}

// VersionName returns the usual name of a crypto/tls version constant,
// such as "TLS 1.3".
func VersionName(v uint16) string {
	return tls.VersionName(v)
}
