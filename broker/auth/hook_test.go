package auth_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/edgegw/edgegw/broker/auth"
	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/tlsdiag"
	"github.com/edgegw/edgegw/internal/tlsx"
)

const wait = 5 * time.Second

// startBroker runs a real embedded mochi server with only our hook, on a
// loopback TCP listener (TLS when cfg is set), and returns its address.
func startBroker(t *testing.T, o auth.Options, cfg *tls.Config) (string, *auth.Hook) {
	t.Helper()
	o.Logger = slog.New(slog.DiscardHandler)
	h, err := auth.NewHook(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "test", Address: "127.0.0.1:0", TLSConfig: cfg})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return l.Address(), h.(*auth.Hook)
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

func connect(t *testing.T, broker, clientID, user, password string, tlsCfg *tls.Config) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(clientID).
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

// TestBrokerEnforcesPasswordsAndACL is acceptance 4: a password file made
// by mosquitto_passwd and a Mosquitto-syntax ACL, enforced by a real
// embedded mochi server for real paho clients.
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
	addr, hook := startBroker(t, auth.Options{PasswordFile: pw, ACLFile: acl}, nil)
	broker := "tcp://" + addr

	// Passwords.
	if _, err := connect(t, broker, "a-wrong", "alice", "not-her-password", nil); err == nil {
		t.Fatal("wrong password accepted")
	} else if d := tlsdiag.Diagnose(err, tlsx.Options{}, addr); d.Code != tlsdiag.CodeNotAuthorized {
		t.Errorf("paho's refusal diagnosed as %q: %s", d.Code, d.Cause)
	}
	if _, err := connect(t, broker, "anon", "", "", nil); err == nil {
		t.Fatal("anonymous client accepted with allow_anonymous off")
	}
	alice, err := connect(t, broker, "alice-1", "alice", "alice-secret", nil)
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	bob, err := connect(t, broker, "bob-1", "bob", "bob secret with spaces", nil)
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	carol, err := connect(t, broker, "carol-1", "carol", "carol-pw", nil) // the $6$ line
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
	if refused, denied := hook.Stats(); refused != 2 || denied < 3 {
		t.Errorf("stats: refused %d denied %d", refused, denied)
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
