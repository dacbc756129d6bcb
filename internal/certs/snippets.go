package certs

import (
	"fmt"
	"strconv"
	"strings"
)

// MosquittoListener returns the mosquitto.conf block for a TLS listener on
// port that uses f's server certificate and requires client certificates
// from f's CA, taking the certificate's CN as the user name.
func MosquittoListener(f Files, port int) string {
	return MosquittoListenerOn(f, "", port)
}

// MosquittoListenerOn is MosquittoListener bound to one address (such as
// 127.0.0.1); an empty address listens on every interface.
func MosquittoListenerOn(f Files, addr string, port int) string {
	var b strings.Builder
	if addr == "" {
		fmt.Fprintf(&b, "listener %d\n", port)
	} else {
		fmt.Fprintf(&b, "listener %d %s\n", port, addr)
	}
	fmt.Fprintf(&b, "cafile %s\n", f.CA.Cert)
	fmt.Fprintf(&b, "certfile %s\n", f.Server.Cert)
	fmt.Fprintf(&b, "keyfile %s\n", f.Server.Key)
	b.WriteString("require_certificate true\n")
	b.WriteString("use_identity_as_username true\n")
	b.WriteString("tls_version tlsv1.2\n")
	return b.String()
}

// GatewayTLSBlock returns the [upstream.tls] table of gateway.toml for the
// client certificate called clientName.
func GatewayTLSBlock(f Files, clientName string) string {
	c, ok := f.Client(clientName)
	if !ok {
		c = Pair{Cert: f.Dir + "/" + clientName + ".crt", Key: f.Dir + "/" + clientName + ".key"}
	}
	var b strings.Builder
	b.WriteString("[upstream.tls]\n")
	fmt.Fprintf(&b, "cafile = %s\n", strconv.Quote(f.CA.Cert))
	fmt.Fprintf(&b, "certfile = %s\n", strconv.Quote(c.Cert))
	fmt.Fprintf(&b, "keyfile = %s\n", strconv.Quote(c.Key))
	if f.KeyPasswordFile != "" {
		fmt.Fprintf(&b, "keyfile_password_file = %s\n", strconv.Quote(f.KeyPasswordFile))
	}
	return b.String()
}
