package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/broker/auth"
	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/tlsdiag"
	"github.com/edgegw/edgegw/internal/tlsx"
)

const wait = 5 * time.Second

// startBroker runs the real embedded broker with the policy o describes,
// on a loopback TCP listener (TLS when cfg is set), and returns its address.
func startBroker(t *testing.T, o auth.Options, cfg *tls.Config) (string, *broker.Broker) {
	t.Helper()
	bo := broker.Options{
		PasswordFile: o.PasswordFile, ACLFile: o.ACLFile, AllowAnonymous: o.AllowAnonymous,
		UseIdentityAsUsername: o.UseIdentityAsUsername, Logger: slog.New(slog.DiscardHandler),
	}
	id := "tcp"
	if cfg != nil {
		bo.TLSListen, bo.TLS, id = "127.0.0.1:0", cfg, "tls"
	} else {
		bo.Listen = "127.0.0.1:0"
	}
	b, err := broker.New(bo)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b.Addr(id).String(), b
}

type received struct {
	mu     sync.Mutex
	topics []string
	ch     chan string
}

func newReceived() *received { return &received{ch: make(chan string, 100)} }

func (r *received) handler(_ paho.Client, m paho.Message) {
	r.mu.Lock()
	r.topics = append(r.topics, m.Topic())
	r.mu.Unlock()
	r.ch <- m.Topic()
}

// await waits for topic to arrive and returns every topic received so far.
func (r *received) await(t *testing.T, topic string) []string {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case got := <-r.ch:
			if got == topic {
				r.mu.Lock()
				defer r.mu.Unlock()
				return append([]string(nil), r.topics...)
			}
		case <-deadline:
			t.Fatalf("%s did not arrive", topic)
		}
	}
}

func connect(t *testing.T, url, clientID, user, password string, tlsCfg *tls.Config) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(wait).SetCleanSession(true).
		SetProtocolVersion(4)
	if user != "" {
		o.SetUsername(user).SetPassword(password)
	}
	if tlsCfg != nil {
		o.SetTLSConfig(tlsCfg)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(wait) {
		t.Fatalf("%s: connect timed out", clientID)
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func subscribe(t *testing.T, c paho.Client, filters map[string]byte, h paho.MessageHandler) map[string]byte {
	t.Helper()
	tok := c.SubscribeMultiple(filters, h)
	if !tok.WaitTimeout(wait) {
		t.Fatal("subscribe timed out")
	}
	return tok.(*paho.SubscribeToken).Result()
}

func publish(t *testing.T, c paho.Client, topic string, qos byte) {
	t.Helper()
	tok := c.Publish(topic, qos, false, "x")
	if !tok.WaitTimeout(wait) {
		t.Fatalf("publish %s timed out", topic)
	}
}

// TestBrokerEnforcesPasswordsAndACL: a password file made
// by mosquitto_passwd and a Mosquitto-syntax ACL, enforced by a real
// embedded broker for real paho clients.
func TestBrokerEnforcesPasswordsAndACL(t *testing.T) {
	pw := passwordFile(t) // alice, bob ($7$), carol ($6$)
	acl := writeACL(t, `# who may do what
user alice
topic read readings/#
topic deny readings/secret
topic write alice/#

user bob
topic write readings/#
topic write secret/#

user carol
topic read alice/#
topic read readings/forged
`)
	addr, bk := startBroker(t, auth.Options{PasswordFile: pw, ACLFile: acl}, nil)
	url := "tcp://" + addr

	// Passwords.
	if _, err := connect(t, url, "a-wrong", "alice", "not-her-password", nil); err == nil {
		t.Fatal("wrong password accepted")
	} else if d := tlsdiag.Diagnose(err, tlsx.Options{}, addr); d.Code != tlsdiag.CodeNotAuthorized {
		t.Errorf("paho's refusal diagnosed as %q: %s", d.Code, d.Cause)
	}
	if _, err := connect(t, url, "anon", "", "", nil); err == nil {
		t.Fatal("anonymous client accepted with allow_anonymous off")
	}
	alice, err := connect(t, url, "alice-1", "alice", "alice-secret", nil)
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	bob, err := connect(t, url, "bob-1", "bob", "bob secret with spaces", nil)
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	carol, err := connect(t, url, "carol-1", "carol", "carol-pw", nil) // the $6$ line
	if err != nil {
		t.Fatalf("carol: %v", err)
	}

	// alice subscribes where she may not (secret/#) and where she may.
	got := newReceived()
	res := subscribe(t, alice, map[string]byte{"secret/#": 1, "readings/#": 1}, got.handler)
	if res["secret/#"] != 0x80 || res["readings/#"] != 1 {
		t.Errorf("SUBACK codes %v: want secret/# refused (0x80), readings/# granted", res)
	}
	for _, topic := range []string{"secret/plans", "readings/secret", "readings/door"} {
		publish(t, bob, topic, 1)
	}
	// bob's messages arrive in order, so by the time readings/door is in,
	// the two before it would have been too.
	if topics := got.await(t, "readings/door"); len(topics) != 1 {
		t.Errorf("alice received %v; want only readings/door", topics)
	}

	// alice publishes where she may not (readings/forged) and where she may.
	seen := newReceived()
	res = subscribe(t, carol, map[string]byte{"readings/forged": 1, "alice/#": 1}, seen.handler)
	if res["readings/forged"] != 1 || res["alice/#"] != 1 {
		t.Fatalf("carol's SUBACK %v", res)
	}
	// QoS 0: mochi disconnects an MQTT 3.1.1 client whose QoS 1 publish is
	// denied (it has no way to say no in a PUBACK); that is checked below.
	publish(t, alice, "readings/forged", 0)
	publish(t, alice, "alice/status", 1)
	if topics := seen.await(t, "alice/status"); len(topics) != 1 {
		t.Errorf("carol received %v; want only alice/status", topics)
	}
	if st := bk.Stats(); st.AuthRefused != 2 || st.ACLDenied < 3 {
		t.Errorf("stats: refused %d denied %d", st.AuthRefused, st.ACLDenied)
	}
	publish(t, alice, "readings/forged", 1)
	deadline := time.Now().Add(wait)
	for alice.IsConnectionOpen() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // bounded poll: paho offers no disconnect event without a handler
	}
	if alice.IsConnectionOpen() {
		t.Error("a denied QoS 1 publish did not end alice's connection")
	}
}

// TestIdentityAsUsername runs the TLS listener with client certificates
// from certs.Init and takes the certificate's CN as the user name for the
// ACL; the CONNACK refusal for a bad password reads in plain words.
func TestIdentityAsUsername(t *testing.T) {
	f, err := certs.Init(certs.Options{Dir: t.TempDir(), ServerNames: []string{"127.0.0.1"}, ClientNames: []string{"gw-01"}})
	if err != nil {
		t.Fatal(err)
	}
	srvCfg, err := tlsx.ServerConfig(tlsx.Options{CAFile: f.CA.Cert, CertFile: f.Server.Cert, KeyFile: f.Server.Key}, false)
	if err != nil {
		t.Fatal(err)
	}
	acl := writeACL(t, "user gw-01\ntopic readwrite gateways/gw-01/#\n")
	addr, _ := startBroker(t, auth.Options{PasswordFile: passwordFile(t), ACLFile: acl, UseIdentityAsUsername: true}, srvCfg)

	c, _ := f.Client("gw-01")
	withCert := tlsx.Options{CAFile: f.CA.Cert, CertFile: c.Cert, KeyFile: c.Key}
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	if rep := tlsdiag.Check(ctx, addr, withCert, "gw-01"); !rep.OK {
		t.Fatalf("check with certificate: %+v", rep)
	}
	cli, err := tlsx.ClientConfig(withCert, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := connect(t, "ssl://"+addr, "gw-01", "", "", cli)
	if err != nil {
		t.Fatalf("connect with certificate: %v", err)
	}
	res := subscribe(t, gw, map[string]byte{"gateways/gw-01/cmd": 1, "gateways/gw-02/cmd": 1}, func(paho.Client, paho.Message) {})
	if res["gateways/gw-01/cmd"] != 1 || res["gateways/gw-02/cmd"] != 0x80 {
		t.Errorf("SUBACK %v: the CN should be the ACL user", res)
	}

	// Without a certificate: refused, and Check says why.
	rep := tlsdiag.CheckWith(ctx, tlsdiag.Request{Addr: addr, TLS: tlsx.Options{CAFile: f.CA.Cert}, ClientID: "x",
		Username: "alice", Password: []byte("wrong")})
	if rep.Code != tlsdiag.CodeNotAuthorized && rep.Code != tlsdiag.CodeBadCredentials {
		t.Errorf("no certificate: %q %s", rep.Code, rep.Cause)
	}
}

// TestAuthenticate: the policy's decision for each kind of CONNECT, and the
// user name the ACL then knows the client by.
func TestAuthenticate(t *testing.T) {
	pw := passwordFile(t) // alice, bob ($7$), carol ($6$)
	withCN := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "gw-01"}}}}
	noCert := &tls.ConnectionState{}
	creds := func(u, p string) auth.Client {
		return auth.Client{ID: "c", HasUsername: true, Username: []byte(u), HasPassword: true, Password: []byte(p)}
	}
	cases := []struct {
		name     string
		o        auth.Options
		c        auth.Client
		ok       bool
		wantUser string
	}{
		{"right $7$ password", auth.Options{PasswordFile: pw}, creds("alice", "alice-secret"), true, "alice"},
		{"right $6$ password", auth.Options{PasswordFile: pw}, creds("carol", "carol-pw"), true, "carol"},
		{"wrong password", auth.Options{PasswordFile: pw}, creds("alice", "bob secret with spaces"), false, "alice"},
		{"unknown user", auth.Options{PasswordFile: pw}, creds("mallory", "alice-secret"), false, "mallory"},
		{"user name without the password flag", auth.Options{PasswordFile: pw}, auth.Client{HasUsername: true, Username: []byte("alice")}, false, "alice"},
		{"anonymous, not allowed", auth.Options{PasswordFile: pw}, auth.Client{}, false, ""},
		{"anonymous, allowed", auth.Options{PasswordFile: pw, AllowAnonymous: true}, auth.Client{}, true, ""},
		{"user name, no password file, anonymous not allowed", auth.Options{}, creds("alice", "x"), false, "alice"},
		{"user name, no password file, anonymous allowed", auth.Options{AllowAnonymous: true}, creds("alice", "x"), true, "alice"},
		{"certificate CN as user name", auth.Options{UseIdentityAsUsername: true}, auth.Client{TLS: withCN}, true, "gw-01"},
		{"CN wins over the CONNECT's user name", auth.Options{PasswordFile: pw, UseIdentityAsUsername: true}, auth.Client{TLS: withCN, HasUsername: true, Username: []byte("alice")}, true, "gw-01"},
		{"TLS without a certificate", auth.Options{PasswordFile: pw, UseIdentityAsUsername: true}, func() auth.Client { c := creds("alice", "alice-secret"); c.TLS = noCert; return c }(), false, "alice"},
		{"plain connection under use_identity_as_username: the password decides", auth.Options{PasswordFile: pw, UseIdentityAsUsername: true}, creds("bob", "bob secret with spaces"), true, "bob"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Logger = slog.New(slog.DiscardHandler)
			p, err := auth.New(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			user, ok := p.Authenticate(tc.c)
			if ok != tc.ok || (ok && user != tc.wantUser) {
				t.Fatalf("Authenticate = %q, %v; want %q, %v", user, ok, tc.wantUser, tc.ok)
			}
			refused, _ := p.Stats()
			if want := map[bool]uint64{true: 0, false: 1}[tc.ok]; refused != want {
				t.Fatalf("refused count %d, want %d", refused, want)
			}
		})
	}
}
