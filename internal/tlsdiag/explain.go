package tlsdiag

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/edgegw/edgegw/internal/tlsx"
)

// Explain turns an error from dialing, the TLS handshake or the MQTT
// CONNECT of the upstream at addr into one plain sentence naming the cause,
// and a hint. o is the TLS configuration that was used.
func Explain(err error, o tlsx.Options, addr string) (cause, hint string) {
	d := Diagnose(err, o, addr)
	return d.Cause, d.Hint
}

// Diagnose is Explain with the stable cause code.
func Diagnose(err error, o tlsx.Options, addr string) Diagnosis {
	return diagnose(err, o, addr, facts{})
}

// Session is what the caller knows about the MQTT session it attempted.
type Session struct {
	Version  byte   // MQTT protocol level of the CONNECT (4 or 5)
	Username string // the user name sent ("" for none)
}

// ExplainSession is Explain knowing the protocol level and the user name
// the CONNECT carried, so a refusal of certificate login is not taken for
// a wrong password.
func ExplainSession(err error, o tlsx.Options, addr string, s Session) (cause, hint string) {
	d := diagnose(err, o, addr, facts{version: s.Version, usernameKnown: true, username: s.Username, certFile: o.CertFile})
	return d.Cause, d.Hint
}

// facts are what Check observed beyond the error itself.
type facts struct {
	known         bool // Check filled these in; Explain knows only the error
	plain         bool // we spoke plain MQTT, not TLS
	certRequested bool // the server sent a CertificateRequest
	handshakeDone bool // the TLS handshake completed on our side
	probedPlain   bool // after a close in the handshake, a plain CONNECT got a CONNACK
	probedTLS     bool // after a close on a plain connection, a TLS handshake got an answer
	version       byte // the MQTT protocol level we spoke (0: unknown)
	probed311     bool // after a close on our MQTT 5 CONNECT, a 3.1.1 CONNECT got a CONNACK
	// usernameKnown says whether username is what the CONNECT carried;
	// certFile is our client certificate ("" without one).
	usernameKnown bool
	username      string
	certFile      string
}

func diagnose(err error, o tlsx.Options, addr string, f facts) Diagnosis {
	if err == nil {
		return Diagnosis{Code: CodeOK, Cause: "connected"}
	}
	sentCert := o.CertFile != ""

	// CONNACK refusals.
	var cc connackCoder
	if errors.As(err, &cc) {
		return connackDiagnosis(&ConnackError{ReturnCode: v3Code(cc.ConnackCode())}, o, addr, f)
	}
	if ce := connackFromPaho(err); ce != nil {
		return connackDiagnosis(ce, o, addr, f)
	}
	var pe *ProtocolError
	if errors.As(err, &pe) {
		if f.plain && len(pe.First) > 0 && (pe.First[0] == 0x15 || pe.First[0] == 0x16) {
			return tlsPort(addr)
		}
		return Diagnosis{Code: CodeProtocol,
			Cause: fmt.Sprintf("the server at %s answered the MQTT CONNECT with bytes that are not MQTT (% x)", addr, pe.First),
			Hint:  "check that the address points at an MQTT broker and not at another service"}
	}

	// Our own files.
	if d, ok := fileDiagnosis(err, o); ok {
		return d
	}

	// The server's certificate.
	var uae x509.UnknownAuthorityError
	if errors.As(err, &uae) && uae.Cert != nil {
		if sameSubjectNotSelfSigned(uae.Cert) {
			return sameSubject("server", uae.Cert)
		}
		signer := uae.Cert.Issuer.String()
		if bytes.Equal(uae.Cert.RawSubject, uae.Cert.RawIssuer) {
			// The server sent its CA along; the chain ends there.
			signer = uae.Cert.Subject.String()
		}
		return Diagnosis{Code: CodeUnknownCA,
			Cause: fmt.Sprintf("the server's certificate was signed by the CA %q, which is not one we trust: we trust %s",
				signer, trustedList(o)),
			Hint: "set cafile to the CA certificate that signed the server's certificate (on a Mosquitto server, the file its certfile was issued from — not the server certificate itself)"}
	}
	var he x509.HostnameError
	if errors.As(err, &he) && he.Certificate != nil {
		names := certNames(he.Certificate)
		held := "no subjectAltName at all"
		if len(names) > 0 {
			held = "only " + strings.Join(quoteAll(names), ", ")
		}
		extra := ""
		if len(names) == 0 && he.Certificate.Subject.CommonName != "" {
			extra = fmt.Sprintf(" (its CN %q is not used for name checks any more)", he.Certificate.Subject.CommonName)
		}
		return Diagnosis{Code: CodeNameMismatch,
			Cause: fmt.Sprintf("the server's certificate does not hold the name %q we connected with: it holds %s%s", he.Host, held, extra),
			Hint:  "connect with one of the names it holds, set server_name to one of them, or reissue the server certificate with every name and IP clients use (`edgegw certs init --server-name NAME …`)"}
	}
	var cie x509.CertificateInvalidError
	if errors.As(err, &cie) && cie.Cert != nil {
		return invalidCert(cie, "server")
	}

	// Alerts the server sent.
	if code, ok := remoteAlert(err); ok {
		return alertDiagnosis(code, o, addr, sentCert, f)
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		if rhe.RecordHeader[0]>>4 == 2 || rhe.RecordHeader[0]>>4 == 14 {
			// CONNACK or DISCONNECT: an MQTT broker answering in plain.
			return plainPort(addr, fmt.Sprintf("its first bytes were % x", rhe.RecordHeader[:]))
		}
		return Diagnosis{Code: CodeProtocol,
			Cause: fmt.Sprintf("the server at %s answered our TLS hello with bytes that are neither TLS nor MQTT (% x, %q)", addr, rhe.RecordHeader[:], printable(rhe.RecordHeader[:])),
			Hint:  "check that the address and port point at the MQTT broker's TLS listener (usually 8883) and not at another service"}
	}
	// crypto/tls has no type for this one: a server that does not know
	// TLS 1.3 ignores supported_versions and picks TLS 1.2 below our minimum.
	if strings.Contains(err.Error(), "server selected unsupported protocol version") {
		return tlsVersion(o, addr)
	}

	// The network.
	if errors.Is(err, syscall.ECONNREFUSED) {
		return Diagnosis{Code: CodeRefused,
			Cause: fmt.Sprintf("nothing is listening on %s (connection refused)", addr),
			Hint:  "check that the broker is running and the port is right (8883 is the usual MQTT over TLS port, 1883 plain MQTT)"}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return Diagnosis{Code: CodeDNS,
			Cause: fmt.Sprintf("the host name %q does not resolve (%s)", dnsErr.Name, dnsErr.Err),
			Hint:  "check the spelling of the address and the board's DNS (/etc/resolv.conf)"}
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return Diagnosis{Code: CodeTimeout,
			Cause: fmt.Sprintf("%s did not answer in time", addr),
			Hint:  "check that the address is reachable (firewall, routing) and that the broker is not overloaded"}
	}
	if isClosed(err) {
		return closedDiagnosis(o, addr, sentCert, f)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return Diagnosis{Code: CodeNetwork,
			Cause: fmt.Sprintf("cannot connect to %s: %v", addr, oe.Err),
			Hint:  "check the address and the network"}
	}
	if strings.HasPrefix(err.Error(), "tls:") {
		return Diagnosis{Code: CodeHandshake,
			Cause: fmt.Sprintf("the TLS handshake with %s failed: %v", addr, err),
			Hint:  "run `edgegw tls-check` for details and look at the broker's log"}
	}
	return Diagnosis{Code: CodeUnknown, Cause: fmt.Sprintf("connecting to %s failed: %v", addr, err),
		Hint: "run `edgegw tls-check` for details and look at the broker's log"}
}

func fileDiagnosis(err error, o tlsx.Options) (Diagnosis, bool) {
	var dirErr *tlsx.CAFileIsDirError
	var fileErr *tlsx.CAPathIsFileError
	var km *tlsx.KeyMismatchError
	var kp *tlsx.KeyPasswordError
	var fe *tlsx.FileError
	switch {
	case errors.As(err, &dirErr):
		return Diagnosis{Code: CodeCAFileIsDir,
			Cause: fmt.Sprintf("cafile %s is a directory, but cafile must name one PEM file (a directory belongs in capath)", dirErr.Path),
			Hint:  fmt.Sprintf("write capath = %q for a directory of CA certificates, or name the CA file itself in cafile", dirErr.Path)}, true
	case errors.As(err, &fileErr):
		return Diagnosis{Code: CodeCAPathIsFile,
			Cause: fmt.Sprintf("capath %s is a file, but capath must name a directory of CA certificates (a single file belongs in cafile)", fileErr.Path),
			Hint:  fmt.Sprintf("write cafile = %q instead", fileErr.Path)}, true
	case errors.As(err, &km):
		return Diagnosis{Code: CodeKeyMismatch,
			Cause: fmt.Sprintf("our key %s is not the private key of our certificate %s", km.KeyFile, km.CertFile),
			Hint:  "pair the certificate with the key it was issued for (compare `openssl x509 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`), or issue a new one with `edgegw certs client`"}, true
	case errors.As(err, &kp):
		if kp.Missing {
			return Diagnosis{Code: CodeKeyPassword,
				Cause: fmt.Sprintf("our key %s is encrypted and no password is configured", kp.KeyFile),
				Hint:  "set keyfile_password_file to a file holding the password (or a systemd credential name), or decrypt the key with `openssl pkey -in KEY -out KEY.clear`"}, true
		}
		return Diagnosis{Code: CodeKeyPassword,
			Cause: fmt.Sprintf("our key %s is encrypted and the password in keyfile_password_file %s does not open it", kp.KeyFile, o.KeyPasswordFile),
			Hint:  "put the right password in that file (first line; a trailing newline is fine)"}, true
	case errors.As(err, &fe):
		return Diagnosis{Code: CodeFile,
			Cause: fmt.Sprintf("%s %s cannot be used: %v", fe.What, fe.Path, fe.Err),
			Hint:  "check the path and the file's content (PEM) and permissions"}, true
	}
	return Diagnosis{}, false
}

func connackDiagnosis(ce *ConnackError, o tlsx.Options, addr string, f facts) Diagnosis {
	if (ce.ReturnCode == 4 || ce.ReturnCode == 5) && f.usernameKnown && f.username == "" && f.certFile != "" {
		// No user name went out: the broker judged our certificate login.
		cn := "its CN"
		if pair, err := tlsx.LoadKeyPair(o); err == nil && pair.Leaf.Subject.CommonName != "" {
			cn = fmt.Sprintf("%q", pair.Leaf.Subject.CommonName)
		}
		return Diagnosis{Code: CodeNotAuthorized,
			Cause: fmt.Sprintf("the broker at %s refused the MQTT connection (%s); we sent no user name, so it judged our client certificate, whose CN %s it takes as the user name", addr, connackText(ce.ReturnCode), cn),
			Hint: fmt.Sprintf("that user must exist on the broker and be allowed to connect: Mosquitto with use_identity_as_username — the ACL for user %s; RabbitMQ with mqtt.ssl_cert_login — rabbitmqctl add_user %s <any password> and rabbitmqctl set_permissions -p / %s '.*' '.*' '.*'",
				strings.Trim(cn, `"`), strings.Trim(cn, `"`), strings.Trim(cn, `"`))}
	}
	switch ce.ReturnCode {
	case 5:
		return Diagnosis{Code: CodeNotAuthorized,
			Cause: fmt.Sprintf("the broker at %s refused the MQTT connection: not authorised (Mosquitto also answers this to a wrong user name or password)", addr),
			Hint:  "check the user name and password against the broker's password_file, and allow_anonymous; with use_identity_as_username the certificate's CN is the user name"}
	case 4:
		return Diagnosis{Code: CodeBadCredentials,
			Cause: fmt.Sprintf("the broker at %s refused the MQTT connection: bad user name or password", addr),
			Hint:  "check username and password against the broker's password file (mosquitto_passwd)"}
	case 2:
		return Diagnosis{Code: CodeIdentifierRejected,
			Cause: fmt.Sprintf("the broker at %s rejected our client identifier", addr),
			Hint:  "use a non-empty client id of at most 23 letters and digits, unique per gateway (the broker may also restrict ids with clientid_prefixes)"}
	}
	return Diagnosis{Code: CodeConnackRefused,
		Cause: fmt.Sprintf("the broker at %s refused the MQTT connection: %s (CONNACK code %d)", addr, connackText(ce.ReturnCode), ce.ReturnCode),
		Hint:  "look at the broker's log"}
}

// remoteAlert returns the TLS alert the peer sent, if err carries one.
// crypto/tls reports it as a *net.OpError with Op "remote error" whose Err
// is its unexported alert type (a uint8); tls.AlertError covers QUIC and
// future versions.
func remoteAlert(err error) (uint8, bool) {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return uint8(ae), true
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil {
		v := reflect.ValueOf(oe.Err)
		if v.Kind() == reflect.Uint8 {
			return uint8(v.Uint()), true
		}
	}
	return 0, false
}

const (
	alertHandshakeFailure       = 40
	alertBadCertificate         = 42
	alertUnsupportedCertificate = 43
	alertCertificateRevoked     = 44
	alertCertificateExpired     = 45
	alertCertificateUnknown     = 46
	alertUnknownCA              = 48
	alertAccessDenied           = 49
	alertDecryptError           = 51
	alertProtocolVersion        = 70
	alertInsufficientSecurity   = 71
	alertCertificateRequired    = 116
)

func alertName(code uint8) string {
	return tls.AlertError(code).Error()
}

func alertDiagnosis(code uint8, o tlsx.Options, addr string, sentCert bool, f facts) Diagnosis {
	switch code {
	case alertProtocolVersion:
		return tlsVersion(o, addr)
	case alertCertificateRequired:
		if !sentCert {
			return clientCertRequired(addr)
		}
	case alertHandshakeFailure:
		if !sentCert && (f.certRequested || !f.handshakeDone) {
			return clientCertRequired(addr)
		}
	case alertBadCertificate, alertUnsupportedCertificate, alertCertificateRevoked, alertCertificateExpired,
		alertCertificateUnknown, alertUnknownCA, alertAccessDenied, alertDecryptError:
		if !sentCert {
			if f.certRequested {
				return clientCertRequired(addr)
			}
			break
		}
		return clientCertRejected(code, o, addr)
	}
	return Diagnosis{Code: CodeHandshake,
		Cause: fmt.Sprintf("the server at %s ended the TLS handshake with the alert %q", addr, alertName(code)),
		Hint:  "the broker's log says why; run `edgegw tls-check` for the negotiated details"}
}

func clientCertRequired(addr string) Diagnosis {
	return Diagnosis{Code: CodeClientCertRequired,
		Cause: fmt.Sprintf("the server at %s requires a client certificate and none is configured", addr),
		Hint:  "set certfile and keyfile in [upstream.tls] (make a pair with `edgegw certs client --dir DIR NAME`, signed by the CA the broker names in its cafile)"}
}

func clientCertRejected(code uint8, o tlsx.Options, addr string) Diagnosis {
	ours := "our certificate " + o.CertFile
	var leaf *x509.Certificate
	if c, err := tlsx.LoadKeyPair(o); err == nil {
		leaf = c.Leaf
		ours = fmt.Sprintf("our certificate (%s, issued by %q)", certName(leaf), leaf.Issuer.String())
	}
	if leaf != nil && sameSubjectNotSelfSigned(leaf) {
		return sameSubject("client", leaf)
	}
	if leaf != nil {
		now := time.Now()
		if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
			return invalidCert(x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired}, "client")
		}
	}
	why := ""
	switch code {
	case alertUnknownCA:
		why = ": it does not trust the CA that signed it"
	case alertCertificateExpired:
		why = ": it says the certificate has expired"
	case alertCertificateRevoked:
		why = ": it says the certificate was revoked"
	}
	return Diagnosis{Code: CodeClientCertRejected,
		Cause: fmt.Sprintf("the server at %s rejected %s with the alert %q%s", addr, ours, alertName(code), why),
		Hint:  "the broker's cafile must hold the CA that signed our certificate; issue ours from the broker's CA with `edgegw certs client` or add our CA to the broker's cafile"}
}

func tlsVersion(o tlsx.Options, addr string) Diagnosis {
	v, _ := o.TLSVersion()
	return Diagnosis{Code: CodeTLSVersion,
		Cause: fmt.Sprintf("the server at %s does not speak %s or later, which our tls_version requires", addr, tls.VersionName(v)),
		Hint:  "set tls_version = \"1.2\" here, or enable TLS 1.3 on the broker (Mosquitto: tls_version tlsv1.3 needs OpenSSL 1.1.1 or later)"}
}

func plainPort(addr, detail string) Diagnosis {
	if detail != "" {
		detail = " (" + detail + ")"
	}
	return Diagnosis{Code: CodePlainPort,
		Cause: fmt.Sprintf("the server at %s speaks plain MQTT, not TLS%s", addr, detail),
		Hint:  "use the broker's TLS port (usually 8883), or, on a trusted network only, a mqtt:// address"}
}

func tlsPort(addr string) Diagnosis {
	return Diagnosis{Code: CodeTLSPort,
		Cause: fmt.Sprintf("the server at %s speaks TLS, but we spoke plain MQTT to it", addr),
		Hint:  "use an mqtts:// address with [upstream.tls] set, or the broker's plain port (usually 1883)"}
}

func closedDiagnosis(o tlsx.Options, addr string, sentCert bool, f facts) Diagnosis {
	switch {
	case !f.known:
		return Diagnosis{Code: CodeClosed,
			Cause: fmt.Sprintf("the server at %s closed the connection without a word of explanation", addr),
			Hint:  "the usual causes: the port speaks plain MQTT (use the TLS port, usually 8883), the broker wants a client certificate, or it refused ours; `edgegw tls-check` tells which"}
	case f.plain && f.probedTLS:
		return tlsPort(addr)
	case f.version == 5 && (f.handshakeDone || f.plain):
		how := "it may not speak MQTT 5"
		if f.probed311 {
			how = "it answers an MQTT 3.1.1 CONNECT, so it does not speak MQTT 5"
		}
		return Diagnosis{Code: CodeMQTT5Refused,
			Cause: fmt.Sprintf("the server at %s closed the connection on our MQTT 5 CONNECT: %s", addr, how),
			Hint:  `set protocol = "3.1.1" in [upstream] (RabbitMQ 3.x, Mosquitto before 1.6 and several cloud gateways speak only MQTT 3.1.1)`}
	case f.plain:
		return Diagnosis{Code: CodeClosedAfterHandshake,
			Cause: fmt.Sprintf("the server at %s closed the connection without answering our MQTT CONNECT", addr),
			Hint:  "the port may speak TLS (use mqtts://) or the broker refused us; look at the broker's log"}
	case f.probedPlain:
		return plainPort(addr, "it closed the connection on our TLS hello and answered a plain MQTT CONNECT")
	case f.certRequested && !sentCert:
		return clientCertRequired(addr)
	case !f.handshakeDone:
		return Diagnosis{Code: CodeHandshake,
			Cause: fmt.Sprintf("the server at %s closed the connection during the TLS handshake", addr),
			Hint:  "most often the port speaks plain MQTT (use the TLS port, usually 8883) or the broker wants a client certificate; the broker's log says which"}
	}
	return Diagnosis{Code: CodeClosedAfterHandshake,
		Cause: fmt.Sprintf("TLS worked, but the server at %s closed the connection without answering our MQTT CONNECT", addr),
		Hint:  "look at the broker's log: with use_identity_as_username a certificate without a CN is dropped, and a client id may be refused or taken"}
}

func invalidCert(e x509.CertificateInvalidError, whose string) Diagnosis {
	c := e.Cert
	now := time.Now()
	const day = "2006-01-02 15:04 MST"
	if e.Reason == x509.Expired {
		if now.Before(c.NotBefore) {
			return Diagnosis{Code: CodeNotYetValid,
				Cause: fmt.Sprintf("the %s certificate (%s) is not valid yet: it is valid from %s, and this machine's clock says %s",
					whose, certName(c), c.NotBefore.UTC().Format(day), now.UTC().Format(day)),
				Hint: "check this board's clock (no RTC: is NTP synchronised? `timedatectl`), or reissue the certificate"}
		}
		return Diagnosis{Code: CodeExpired,
			Cause: fmt.Sprintf("the %s certificate (%s) expired on %s (valid from %s); this machine's clock says %s",
				whose, certName(c), c.NotAfter.UTC().Format(day), c.NotBefore.UTC().Format(day), now.UTC().Format(day)),
			Hint: "issue a new certificate (`edgegw certs …`), or check this board's clock if the date is wrong"}
	}
	return Diagnosis{Code: CodeHandshake,
		Cause: fmt.Sprintf("the %s certificate (%s) cannot be used: %v", whose, certName(c), e),
		Hint:  "reissue it with `edgegw certs`: a CA must be marked as a CA and a server certificate must allow server authentication"}
}

// sameSubjectNotSelfSigned reports the classic Mosquitto mistake: a leaf
// issued by a CA with the very same subject, which OpenSSL then takes for a
// self-signed certificate.
func sameSubjectNotSelfSigned(c *x509.Certificate) bool {
	if !bytes.Equal(c.RawSubject, c.RawIssuer) {
		return false
	}
	return c.CheckSignatureFrom(c) != nil
}

func sameSubject(whose string, c *x509.Certificate) Diagnosis {
	return Diagnosis{Code: CodeSameSubject,
		Cause: fmt.Sprintf("the %s certificate has the same subject (%s) as the CA that signed it, so OpenSSL-based peers such as Mosquitto take it for a self-signed certificate and reject it",
			whose, c.Subject.String()),
		Hint: "reissue the certificate with a subject (CN) different from the CA's; `edgegw certs init` does this for you"}
}

// trustedList names the CAs o trusts.
func trustedList(o tlsx.Options) string {
	if o.CAFile == "" && o.CAPath == "" {
		return "only the system's CAs (no cafile or capath is set)"
	}
	cas, err := tlsx.LoadCAs(o)
	if err != nil {
		return fmt.Sprintf("none that load (%v)", err)
	}
	var names []string
	for _, c := range cas {
		names = append(names, fmt.Sprintf("%q from %s", c.Cert.Subject.String(), c.Path))
	}
	return strings.Join(names, ", ")
}

// certName is how a certificate is named in sentences.
func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return "CN=" + c.Subject.CommonName
	}
	return c.Subject.String()
}

// certNames lists the DNS names and IP addresses a certificate holds.
func certNames(c *x509.Certificate) []string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = fmt.Sprintf("%q", x)
	}
	return out
}

// isClosed reports whether err means the peer closed or reset the
// connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// printable keeps the printable ASCII of b ("HTTP/" of an HTTP answer).
func printable(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			out = append(out, c)
		} else {
			out = append(out, '.')
		}
	}
	return string(out)
}
