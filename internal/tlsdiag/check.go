package tlsdiag

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/edgegw/edgegw/internal/tlsx"
)

// Report is what Check found.
type Report struct {
	OK             bool
	Code           Code // CodeOK or the cause
	Cause, Hint    string
	TLSVersion     string   // e.g. "TLS 1.3"
	Cipher         string   // e.g. "TLS_AES_128_GCM_SHA256"
	ServerChain    []string // one line per certificate the server sent: subject, issuer, validity
	ServerNames    []string // DNS names and IPs of the server's certificate
	ClientIdentity string   // the certificate we presented, or "" when none
}

// Request is everything Check can be asked to do.
type Request struct {
	// Addr is "host:port", or a URL: mqtts://, ssl:// or tls:// (TLS, the
	// default) or mqtt:// or tcp:// (plain MQTT).
	Addr     string
	TLS      tlsx.Options
	ClientID string
	Username string
	Password []byte        // sent only with a Username
	Timeout  time.Duration // per step; default 5 s
	// Version is the MQTT protocol level of the CONNECT: 4 (3.1.1, the
	// default) or 5, as the gateway will speak it.
	Version byte
}

// Check dials addr, completes the TLS handshake with o and an MQTT 3.1.1
// CONNECT with clientID, reads the CONNACK and reports OK with what was
// negotiated, or the cause of the first failure.
func Check(ctx context.Context, addr string, o tlsx.Options, clientID string) Report {
	return CheckWith(ctx, Request{Addr: addr, TLS: o, ClientID: clientID})
}

// SplitAddress returns the host:port of an address and whether it is
// plain MQTT (mqtt:// or tcp://). A host:port without a scheme is TLS.
func SplitAddress(addr string) (hostport string, plain bool, err error) {
	hostport = addr
	if i := strings.Index(addr, "://"); i >= 0 {
		switch scheme := strings.ToLower(addr[:i]); scheme {
		case "mqtt", "tcp":
			plain = true
		case "mqtts", "ssl", "tls", "tcps":
		default:
			return "", false, fmt.Errorf("tlsdiag: address %q: scheme %q is not mqtt:// or mqtts://", addr, scheme)
		}
		hostport = strings.TrimSuffix(addr[i+3:], "/")
	}
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return "", false, fmt.Errorf("tlsdiag: address %q: %w (write host:port, e.g. broker.example.com:8883)", addr, err)
	}
	return hostport, plain, nil
}

// CheckWith is Check with credentials and plain MQTT.
func CheckWith(ctx context.Context, r Request) Report {
	if r.Timeout <= 0 {
		r.Timeout = 5 * time.Second
	}
	hostport, plain, err := SplitAddress(r.Addr)
	if err != nil {
		return failed(Diagnosis{Code: CodeConfig, Cause: err.Error(), Hint: "fix the address"})
	}
	if r.Version != 5 {
		r.Version = 4
	}
	var rep Report
	f := facts{known: true, plain: plain, version: r.Version, usernameKnown: true, username: r.Username, certFile: r.TLS.CertFile}
	fail := func(err error) Report {
		d := diagnose(err, r.TLS, hostport, f)
		rep.Code, rep.Cause, rep.Hint = d.Code, d.Cause, d.Hint
		return rep
	}

	var cfg *tls.Config
	if !plain {
		cfg, err = tlsx.ClientConfig(r.TLS, slog.New(slog.DiscardHandler))
		if err != nil {
			return fail(err)
		}
		if r.TLS.CertFile != "" {
			pair, err := tlsx.LoadKeyPair(r.TLS)
			if err != nil {
				return fail(err)
			}
			rep.ClientIdentity = fmt.Sprintf("%s (issued by %s, valid until %s)", pair.Leaf.Subject.String(), pair.Leaf.Issuer.String(), pair.Leaf.NotAfter.UTC().Format(time.DateOnly))
			if sameSubjectNotSelfSigned(pair.Leaf) {
				d := sameSubject("client", pair.Leaf)
				rep.Code, rep.Cause, rep.Hint = d.Code, d.Cause, d.Hint
				return rep
			}
		}
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(hostport)
			cfg.ServerName = host
		}
		get := cfg.GetClientCertificate
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			f.certRequested = true
			if get == nil {
				return &tls.Certificate{}, nil
			}
			return get(cri)
		}
	}

	conn, err := dial(ctx, hostport, r.Timeout)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	var rw net.Conn = conn
	if !plain {
		tc := tls.Client(conn, cfg)
		hctx, cancel := context.WithTimeout(ctx, r.Timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			if isClosed(err) {
				f.probedPlain = probePlain(ctx, hostport, r.Timeout)
			}
			return fail(err)
		}
		f.handshakeDone = true
		st := tc.ConnectionState()
		rep.TLSVersion = tls.VersionName(st.Version)
		rep.Cipher = tls.CipherSuiteName(st.CipherSuite)
		for _, c := range st.PeerCertificates {
			rep.ServerChain = append(rep.ServerChain, chainLine(c))
		}
		if len(st.PeerCertificates) > 0 {
			leaf := st.PeerCertificates[0]
			rep.ServerNames = certNames(leaf)
			if sameSubjectNotSelfSigned(leaf) {
				d := sameSubject("server", leaf)
				rep.Code, rep.Cause, rep.Hint = d.Code, d.Cause, d.Hint
				return rep
			}
		}
		rw = tc
	}

	_ = rw.SetDeadline(time.Now().Add(r.Timeout))
	_, err = rw.Write(connectPacket(r.ClientID, r.Username, r.Password, r.Version))
	if err == nil {
		err = readConnack(rw, r.Version)
	}
	if err != nil {
		if r.Version == 5 && isClosed(err) {
			// Does it speak 3.1.1? Then MQTT 5 is what it refused.
			f.probed311 = probeVersion(ctx, hostport, cfg, r, 4)
		}
		if plain && isClosed(err) {
			f.probedTLS = probeTLS(ctx, hostport, r.Timeout)
		}
		if !plain && isClosed(err) && f.certRequested {
			// In TLS 1.3 the server judges our certificate after our side
			// of the handshake is done; its alert can be lost to a reset
			// when our CONNECT crosses its close. Ask again, sending
			// nothing, and read the alert.
			if alertErr := awaitAlert(ctx, hostport, cfg, r.Timeout); alertErr != nil {
				return fail(alertErr)
			}
		}
		return fail(err)
	}
	_, _ = rw.Write([]byte{0xe0, 0}) // DISCONNECT
	rep.OK, rep.Code = true, CodeOK
	return rep
}

func failed(d Diagnosis) Report {
	return Report{Code: d.Code, Cause: d.Cause, Hint: d.Hint}
}

func dial(ctx context.Context, hostport string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(ctx, "tcp", hostport)
}

// probePlain sends a plain MQTT CONNECT and reports whether a CONNACK (of
// any return code) came back: the port speaks plain MQTT.
func probePlain(ctx context.Context, hostport string, timeout time.Duration) bool {
	conn, err := dial(ctx, hostport, timeout)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(connectPacket("edgegw-tls-check-probe", "", nil, 4)); err != nil {
		return false
	}
	err = readConnack(conn, 4)
	if err == nil {
		_, _ = conn.Write([]byte{0xe0, 0})
		return true
	}
	_, refused := err.(*ConnackError)
	return refused
}

// probeVersion connects again (TLS with cfg unless plain) and reports
// whether a CONNECT at protocol level v gets a CONNACK (of any code).
func probeVersion(ctx context.Context, hostport string, cfg *tls.Config, r Request, v byte) bool {
	conn, err := dial(ctx, hostport, r.Timeout)
	if err != nil {
		return false
	}
	defer conn.Close()
	var rw net.Conn = conn
	if cfg != nil {
		tc := tls.Client(conn, cfg)
		hctx, cancel := context.WithTimeout(ctx, r.Timeout)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			return false
		}
		rw = tc
	}
	_ = rw.SetDeadline(time.Now().Add(r.Timeout))
	if _, err := rw.Write(connectPacket(r.ClientID+"-probe", r.Username, r.Password, v)); err != nil {
		return false
	}
	err = readConnack(rw, v)
	if err == nil {
		_, _ = rw.Write([]byte{0xe0, 0})
		return true
	}
	_, refused := err.(*ConnackError)
	return refused
}

// awaitAlert completes a handshake and reads without writing, returning
// the error if it carries a TLS alert, else nil.
func awaitAlert(ctx context.Context, hostport string, cfg *tls.Config, timeout time.Duration) error {
	conn, err := dial(ctx, hostport, timeout)
	if err != nil {
		return nil
	}
	defer conn.Close()
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		if _, ok := remoteAlert(err); ok {
			return err
		}
		return nil
	}
	_ = tc.SetReadDeadline(time.Now().Add(timeout))
	_, err = tc.Read(make([]byte, 1))
	if _, ok := remoteAlert(err); ok {
		return err
	}
	return nil
}

// probeTLS starts a TLS handshake without verification and reports whether
// the server answered in TLS (a completed handshake or a TLS alert).
func probeTLS(ctx context.Context, hostport string, timeout time.Duration) bool {
	conn, err := dial(ctx, hostport, timeout)
	if err != nil {
		return false
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) // only asks whether the port speaks TLS
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = tc.HandshakeContext(hctx)
	if err == nil {
		return true
	}
	_, alert := remoteAlert(err)
	return alert
}

func chainLine(c *x509.Certificate) string {
	return fmt.Sprintf("%s (issuer %s, valid %s to %s)", c.Subject.String(), c.Issuer.String(),
		c.NotBefore.UTC().Format(time.DateOnly), c.NotAfter.UTC().Format(time.DateOnly))
}
