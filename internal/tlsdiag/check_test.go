package tlsdiag_test

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/testenv"
	"github.com/edgegw/edgegw/internal/tlsdiag"
	"github.com/edgegw/edgegw/internal/tlsx"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func needTools(t *testing.T) {
	t.Helper()
	testenv.Tools(t, "mosquitto mosquitto-clients openssl", "mosquitto", "mosquitto_pub", "mosquitto_sub", "mosquitto_passwd", "openssl")
}

// mutualTLS is a mosquitto.conf demanding client certificates (mutual TLS).
func mutualTLS(f certs.Files, port int) string {
	return "per_listener_settings false\nallow_anonymous false\n" + certs.MosquittoListenerOn(f, "127.0.0.1", port)
}

func clientOpts(f certs.Files, name string) tlsx.Options {
	c, _ := f.Client(name)
	return tlsx.Options{CAFile: f.CA.Cert, CertFile: c.Cert, KeyFile: c.Key}
}

// TestCertsInitWithRealMosquitto: certificates from
// certs.Init start a real Mosquitto with require_certificate and
// use_identity_as_username; mosquitto_pub connects and publishes with them,
// and Check reports OK.
func TestCertsInitWithRealMosquitto(t *testing.T) {
	needTools(t)
	for _, keyType := range []string{"ecdsa", "rsa2048"} {
		t.Run(keyType, func(t *testing.T) {
			dir := t.TempDir()
			f, err := certs.Init(certs.Options{Dir: dir, ServerNames: []string{"localhost", "127.0.0.1"},
				ClientNames: []string{"gw-01"}, KeyType: keyType})
			if err != nil {
				t.Fatal(err)
			}
			port := freePort(t)
			startMosquitto(t, port, mutualTLS(f, port))
			c, _ := f.Client("gw-01")
			topic := "readings/" + keyType
			pub := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(port),
				"--cafile", f.CA.Cert, "--cert", c.Cert, "--key", c.Key, "-t", topic, "-m", "hello", "-r", "-q", "1")
			if out, err := pub.CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub: %v\n%s", err, out)
			}
			// The retained message proves the publish reached the broker.
			sub := exec.Command("mosquitto_sub", "-h", "localhost", "-p", fmt.Sprint(port),
				"--cafile", f.CA.Cert, "--cert", c.Cert, "--key", c.Key, "-t", topic, "-C", "1", "-W", "10")
			out, err := sub.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "hello" {
				t.Fatalf("mosquitto_sub: %v, got %q", err, out)
			}

			rep := tlsdiag.Check(ctx(t), fmt.Sprintf("127.0.0.1:%d", port), clientOpts(f, "gw-01"), "edgegw-test")
			if !rep.OK || rep.Code != tlsdiag.CodeOK {
				t.Fatalf("Check: %+v", rep)
			}
			if rep.TLSVersion != "TLS 1.3" || rep.Cipher == "" {
				t.Errorf("negotiated %q %q", rep.TLSVersion, rep.Cipher)
			}
			if !strings.Contains(strings.Join(rep.ServerNames, ","), "127.0.0.1") || len(rep.ServerChain) == 0 {
				t.Errorf("server names %v chain %v", rep.ServerNames, rep.ServerChain)
			}
			if !strings.Contains(rep.ClientIdentity, "CN=gw-01") {
				t.Errorf("client identity %q", rep.ClientIdentity)
			}
			// By name too: the server certificate holds "localhost".
			rep = tlsdiag.Check(ctx(t), fmt.Sprintf("localhost:%d", port), clientOpts(f, "gw-01"), "edgegw-test")
			if !rep.OK {
				t.Fatalf("Check by name: %+v", rep)
			}
		})
	}
}

// tlsServer is a Go TLS server for the mistakes Mosquitto cannot express:
// it completes handshakes with cfg and answers one CONNECT with a CONNACK.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 256)
			if _, err := c.Read(buf); err == nil {
				_, _ = c.Write([]byte{0x20, 2, 0, 0})
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

// TestMisconfigurations: real servers set up wrong, and the
// exact cause Check names for each.
func TestMisconfigurations(t *testing.T) {
	needTools(t)
	base := t.TempDir()
	good, err := certs.Init(certs.Options{Dir: filepath.Join(base, "good"), ServerNames: []string{"localhost", "127.0.0.1"},
		ClientNames: []string{"gw-01", "gw-02"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.Init(certs.Options{Dir: filepath.Join(base, "other"), ServerNames: []string{"127.0.0.1"},
		ClientNames: []string{"gw-01"}})
	if err != nil {
		t.Fatal(err)
	}
	wrongName, err := certs.Init(certs.Options{Dir: filepath.Join(base, "wrongname"), ServerNames: []string{"broker.example.com", "10.9.8.7"}})
	if err != nil {
		t.Fatal(err)
	}
	past := time.Date(2020, 3, 1, 12, 0, 0, 0, time.UTC)
	expired, err := certs.Init(certs.Options{Dir: filepath.Join(base, "expired"), ServerNames: []string{"127.0.0.1"}, Days: 30,
		Now: func() time.Time { return past }})
	if err != nil {
		t.Fatal(err)
	}
	future := time.Now().AddDate(1, 0, 0)
	notYet, err := certs.Init(certs.Options{Dir: filepath.Join(base, "notyet"), ServerNames: []string{"127.0.0.1"},
		Now: func() time.Time { return future }})
	if err != nil {
		t.Fatal(err)
	}
	// The classic Mosquitto mistake: the same subject for the CA and the server.
	sameDir := filepath.Join(base, "same")
	if err := os.Mkdir(sameDir, 0o700); err != nil {
		t.Fatal(err)
	}
	subj := pkix.Name{CommonName: "mosquitto", Organization: []string{"Example"}}
	sameCA := makeCA(t, sameDir, subj)
	sameCert, sameKey := sameCA.leaf(t, sameDir, "server", subj, []string{"127.0.0.1"})
	// An encrypted client key with no password configured.
	encDir := filepath.Join(base, "enc")
	enc, err := certs.Init(certs.Options{Dir: encDir, ServerNames: []string{"127.0.0.1"}, ClientNames: []string{"gw-01"}, KeyPassword: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	// A password file for CONNACK refusals.
	pwFile := filepath.Join(base, "passwd")
	if out, err := exec.Command("mosquitto_passwd", "-c", "-b", pwFile, "alice", "right").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}

	serverOnly := func(f certs.Files, port int) string {
		return fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nallow_anonymous true\n", port, f.CA.Cert, f.Server.Cert, f.Server.Key)
	}
	serverWith := func(certFile, keyFile string, port int) string {
		return fmt.Sprintf("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\nallow_anonymous true\n", port, certFile, keyFile)
	}

	type tc struct {
		name     string
		conf     func(port int) string // a Mosquitto config, or nil
		goServer func(t *testing.T) string
		addr     func(hostport string) string
		opts     tlsx.Options
		clientID string
		user     string
		password string
		want     tlsdiag.Code
		mentions []string
		// explain: Explain on the error of a bare tls.Dial (as the bridge
		// sees it, without Check's probes) names the same cause.
		explain bool
	}
	goodClient := clientOpts(good, "gw-01")
	gw02, _ := good.Client("gw-02")
	cases := []tc{
		{name: "server signed by a CA we do not trust",
			conf:    func(p int) string { return serverOnly(good, p) },
			opts:    tlsx.Options{CAFile: other.CA.Cert},
			explain: true, want: tlsdiag.CodeUnknownCA, mentions: []string{good.CA.Name, other.CA.Name, other.CA.Cert}},
		{name: "server certificate without the name we use",
			conf:    func(p int) string { return serverOnly(wrongName, p) },
			opts:    tlsx.Options{CAFile: wrongName.CA.Cert},
			explain: true, want: tlsdiag.CodeNameMismatch, mentions: []string{`"127.0.0.1"`, `"broker.example.com"`, `"10.9.8.7"`}},
		{name: "server certificate expired",
			conf:    func(p int) string { return serverOnly(expired, p) },
			opts:    tlsx.Options{CAFile: expired.CA.Cert},
			explain: true, want: tlsdiag.CodeExpired, mentions: []string{"2020-03-31", "2020-03-01"}},
		{name: "server certificate not yet valid",
			conf:    func(p int) string { return serverOnly(notYet, p) },
			opts:    tlsx.Options{CAFile: notYet.CA.Cert},
			explain: true, want: tlsdiag.CodeNotYetValid, mentions: []string{future.Add(-time.Hour).UTC().Format("2006-01-02")}},
		{name: "server requires a client certificate, none configured",
			conf:    func(p int) string { return mutualTLS(good, p) },
			opts:    tlsx.Options{CAFile: good.CA.Cert},
			explain: true, want: tlsdiag.CodeClientCertRequired, mentions: []string{"requires a client certificate"}},
		{name: "server requires a client certificate, TLS 1.2 (Go server)",
			goServer: func(t *testing.T) string {
				pair, err := tls.LoadX509KeyPair(good.Server.Cert, good.Server.Key)
				if err != nil {
					t.Fatal(err)
				}
				return tlsServer(t, &tls.Config{Certificates: []tls.Certificate{pair}, MaxVersion: tls.VersionTLS12,
					ClientAuth: tls.RequireAnyClientCert})
			},
			opts: tlsx.Options{CAFile: good.CA.Cert},
			want: tlsdiag.CodeClientCertRequired},
		{name: "client certificate from another CA",
			conf: func(p int) string { return mutualTLS(good, p) },
			opts: func() tlsx.Options {
				o := clientOpts(other, "gw-01")
				o.CAFile = good.CA.Cert
				return o
			}(),
			explain: true, want: tlsdiag.CodeClientCertRejected, mentions: []string{other.CA.Name, "unknown certificate authority"}},
		{name: "server's TLS maximum below our minimum",
			goServer: func(t *testing.T) string {
				pair, err := tls.LoadX509KeyPair(good.Server.Cert, good.Server.Key)
				if err != nil {
					t.Fatal(err)
				}
				return tlsServer(t, &tls.Config{Certificates: []tls.Certificate{pair}, MaxVersion: tls.VersionTLS12})
			},
			opts:    tlsx.Options{CAFile: good.CA.Cert, MinVersion: "1.3"},
			explain: true, want: tlsdiag.CodeTLSVersion, mentions: []string{"TLS 1.3"}},
		{name: "our key is not our certificate's",
			conf:    func(p int) string { return mutualTLS(good, p) },
			opts:    tlsx.Options{CAFile: good.CA.Cert, CertFile: goodClient.CertFile, KeyFile: gw02.Key},
			explain: true, want: tlsdiag.CodeKeyMismatch, mentions: []string{gw02.Key, goodClient.CertFile}},
		{name: "CA and server certificate with the same subject",
			conf: func(p int) string { return serverWith(sameCert, sameKey, p) },
			opts: tlsx.Options{CAFile: sameCA.path},
			want: tlsdiag.CodeSameSubject, mentions: []string{"CN=mosquitto"}},
		{name: "client certificate with its CA's subject",
			conf: func(p int) string {
				return fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n", p, sameCA.path, good.Server.Cert, good.Server.Key)
			},
			opts: tlsx.Options{CAFile: good.CA.Cert, CertFile: sameCert, KeyFile: sameKey},
			want: tlsdiag.CodeSameSubject, mentions: []string{"client certificate", "CN=mosquitto"}},
		{name: "a directory given as cafile",
			conf:    func(p int) string { return serverOnly(good, p) },
			opts:    tlsx.Options{CAFile: good.Dir},
			explain: true, want: tlsdiag.CodeCAFileIsDir, mentions: []string{good.Dir, "capath"}},
		{name: "a file given as capath",
			conf:    func(p int) string { return serverOnly(good, p) },
			opts:    tlsx.Options{CAPath: good.CA.Cert},
			explain: true, want: tlsdiag.CodeCAPathIsFile, mentions: []string{good.CA.Cert, "cafile"}},
		{name: "TLS to a plain MQTT port",
			conf: func(p int) string { return fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\n", p) },
			opts: goodClient,
			want: tlsdiag.CodePlainPort, mentions: []string{"plain MQTT"}},
		{name: "TLS to a port that speaks neither TLS nor MQTT (HTTP)",
			goServer: func(t *testing.T) string {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
						c.Close()
					}
				}()
				return ln.Addr().String()
			},
			opts:    goodClient,
			explain: true, want: tlsdiag.CodeProtocol, mentions: []string{"neither TLS nor MQTT", "HTTP"}},
		{name: "plain MQTT to a TLS port",
			conf: func(p int) string { return serverOnly(good, p) },
			addr: func(hp string) string { return "mqtt://" + hp },
			want: tlsdiag.CodeTLSPort, mentions: []string{"speaks TLS"}},
		{name: "nothing listening",
			opts:    goodClient,
			explain: true, want: tlsdiag.CodeRefused, mentions: []string{"nothing is listening"}},
		{name: "encrypted key, no password",
			conf: func(p int) string { return serverOnly(enc, p) },
			opts: func() tlsx.Options {
				c, _ := enc.Client("gw-01")
				return tlsx.Options{CAFile: enc.CA.Cert, CertFile: c.Cert, KeyFile: c.Key}
			}(),
			explain: true, want: tlsdiag.CodeKeyPassword, mentions: []string{"encrypted"}},
		{name: "CONNACK not authorised (no user name, anonymous off)",
			conf: func(p int) string {
				return strings.Replace(serverOnly(good, p), "allow_anonymous true", "allow_anonymous false", 1) + "password_file " + pwFile + "\n"
			},
			opts: tlsx.Options{CAFile: good.CA.Cert},
			want: tlsdiag.CodeNotAuthorized},
		{name: "CONNACK not authorised (Mosquitto's answer to a wrong password)",
			conf: func(p int) string {
				return strings.Replace(serverOnly(good, p), "allow_anonymous true", "allow_anonymous false", 1) + "password_file " + pwFile + "\n"
			},
			opts: tlsx.Options{CAFile: good.CA.Cert},
			user: "alice", password: "wrong",
			want: tlsdiag.CodeNotAuthorized, mentions: []string{"password"}},
		{name: "CONNACK identifier rejected",
			conf: func(p int) string { return serverOnly(good, p) + "allow_zero_length_clientid false\n" },
			opts: tlsx.Options{CAFile: good.CA.Cert}, clientID: "-",
			want: tlsdiag.CodeIdentifierRejected, mentions: []string{"identifier"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var hostport string
			switch {
			case c.conf != nil:
				port := freePort(t)
				startMosquitto(t, port, c.conf(port))
				hostport = fmt.Sprintf("127.0.0.1:%d", port)
			case c.goServer != nil:
				hostport = c.goServer(t)
			default:
				hostport = fmt.Sprintf("127.0.0.1:%d", freePort(t))
			}
			addr := hostport
			if c.addr != nil {
				addr = c.addr(hostport)
			}
			clientID := "edgegw-test"
			if c.clientID == "-" {
				clientID = ""
			}
			req := tlsdiag.Request{Addr: addr, TLS: c.opts, ClientID: clientID, Username: c.user}
			if c.password != "" {
				req.Password = []byte(c.password)
			}
			rep := tlsdiag.CheckWith(ctx(t), req)
			t.Logf("cause: %s\nhint: %s", rep.Cause, rep.Hint)
			if rep.OK || rep.Code != c.want {
				t.Fatalf("got code %q (%s), want %q", rep.Code, rep.Cause, c.want)
			}
			for _, m := range c.mentions {
				if !strings.Contains(rep.Cause, m) {
					t.Errorf("cause does not mention %q: %s", m, rep.Cause)
				}
			}
			if rep.Hint == "" {
				t.Error("no hint")
			}
			if c.explain {
				err := bareDial(hostport, c.opts)
				if d := tlsdiag.Diagnose(err, c.opts, hostport); d.Code != c.want {
					t.Errorf("Explain(%v) = %q (%s), want %q", err, d.Code, d.Cause, c.want)
				}
			}
		})
	}
}

// bareDial connects the way the bridge does (tls.Dial with
// tlsx.ClientConfig) and waits briefly for the server's verdict on our
// certificate, which TLS 1.3 sends after the handshake.
func bareDial(hostport string, o tlsx.Options) error {
	cfg, err := tlsx.ClientConfig(o, nil)
	if err != nil {
		return err
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", hostport, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}
