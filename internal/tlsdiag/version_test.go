package tlsdiag_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/tlsdiag"
	"github.com/edgegw/edgegw/internal/tlsx"
)

// only311 is a plain MQTT server that answers a 3.1.1 CONNECT and closes
// the connection on any other protocol level, as RabbitMQ 3.x does.
func only311(t *testing.T) string {
	t.Helper()
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
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				hdr := make([]byte, 2)
				if _, err := io.ReadFull(br, hdr); err != nil {
					return
				}
				body := make([]byte, hdr[1])
				if _, err := io.ReadFull(br, body); err != nil || len(body) < 7 {
					return
				}
				if body[6] != 4 { // protocol level after "\x00\x04MQTT"
					return
				}
				_, _ = c.Write([]byte{0x20, 2, 0, 0})
			}()
		}
	}()
	return ln.Addr().String()
}

// TestCheckSpeaksTheProtocol: tls-check sends the CONNECT at the configured
// protocol level, so an MQTT 5 refusal shows there as it does in the
// gateway, and is named as such.
func TestCheckSpeaksTheProtocol(t *testing.T) {
	addr := only311(t)
	cases := []struct {
		version  byte
		want     tlsdiag.Code
		mentions []string
	}{
		{4, tlsdiag.CodeOK, nil},
		{5, tlsdiag.CodeMQTT5Refused, []string{"MQTT 5 CONNECT", "answers an MQTT 3.1.1 CONNECT", `protocol = "3.1.1"`}},
	}
	for _, c := range cases {
		rep := tlsdiag.CheckWith(context.Background(), tlsdiag.Request{Addr: "mqtt://" + addr, ClientID: "t", Version: c.version, Timeout: 2 * time.Second})
		if rep.Code != c.want {
			t.Errorf("version %d: %q (%s — %s), want %q", c.version, rep.Code, rep.Cause, rep.Hint, c.want)
		}
		for _, m := range c.mentions {
			if !strings.Contains(rep.Cause+" "+rep.Hint, m) {
				t.Errorf("version %d: %q — %q lacks %q", c.version, rep.Cause, rep.Hint, m)
			}
		}
	}
	// A real MQTT 5 broker answers an MQTT 5 CONNECT (a CONNACK with properties).
	port := freePort(t)
	startMosquitto(t, port, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\n", port))
	rep := tlsdiag.CheckWith(context.Background(), tlsdiag.Request{Addr: fmt.Sprintf("mqtt://127.0.0.1:%d", port), ClientID: "t", Version: 5, Timeout: 2 * time.Second})
	if rep.Code != tlsdiag.CodeOK {
		t.Errorf("MQTT 5 to Mosquitto: %q %s", rep.Code, rep.Cause)
	}
}

// TestCertificateLoginRefused: a refusal when no user name was sent and a
// client certificate was (Mosquitto use_identity_as_username, RabbitMQ
// mqtt.ssl_cert_login) names the certificate's CN as the user that must
// exist, not a password file.
func TestCertificateLoginRefused(t *testing.T) {
	f, err := certs.Init(certs.Options{Dir: filepath.Join(t.TempDir(), "pki"), ServerNames: []string{"127.0.0.1"}, ClientNames: []string{"gw-07"}})
	if err != nil {
		t.Fatal(err)
	}
	o := tlsx.Options{CAFile: f.CA.Cert, CertFile: f.Clients[0].Cert, KeyFile: f.Clients[0].Key}
	for _, rc := range []byte{4, 5, 0x86, 0x87} {
		cause, hint := tlsdiag.ExplainSession(&tlsdiag.ConnackError{ReturnCode: rc}, o, "b:8883", tlsdiag.Session{Version: 4})
		if !strings.Contains(cause, `"gw-07"`) || !strings.Contains(hint, "rabbitmqctl add_user gw-07") || strings.Contains(hint, "mosquitto_passwd") {
			t.Errorf("code 0x%x: %q — %q", rc, cause, hint)
		}
	}
	// With a user name the password hint stays.
	_, hint := tlsdiag.ExplainSession(&tlsdiag.ConnackError{ReturnCode: 4}, o, "b:8883", tlsdiag.Session{Version: 4, Username: "gw"})
	if !strings.Contains(hint, "password") {
		t.Errorf("with a user name: %q", hint)
	}
}
