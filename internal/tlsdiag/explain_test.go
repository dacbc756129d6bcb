package tlsdiag_test

import (
	"fmt"
	"strings"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/edgegw/edgegw/internal/tlsdiag"
	"github.com/edgegw/edgegw/internal/tlsx"
)

// TestExplainConnack covers the CONNACK return codes, both as Check reads
// them and as paho.mqtt.golang reports them to the bridge. Return code 4 is
// here and not in the table of real servers: neither Mosquitto 2.0 nor
// mochi sends it to an MQTT 3.1.1 client (both answer 5).
func TestExplainConnack(t *testing.T) {
	cases := []struct {
		rc   byte
		want tlsdiag.Code
	}{
		{2, tlsdiag.CodeIdentifierRejected},
		{3, tlsdiag.CodeConnackRefused},
		{4, tlsdiag.CodeBadCredentials},
		{5, tlsdiag.CodeNotAuthorized},
	}
	for _, c := range cases {
		for _, err := range []error{&tlsdiag.ConnackError{ReturnCode: c.rc}, fmt.Errorf("bridge: connect: %w", paho.ConnErrors[c.rc])} {
			d := tlsdiag.Diagnose(err, tlsx.Options{}, "broker:8883")
			if d.Code != c.want || !strings.Contains(d.Cause, "broker:8883") || d.Hint == "" {
				t.Errorf("rc %d (%v): got %q %q", c.rc, err, d.Code, d.Cause)
			}
		}
	}
	// The bridge's own refusal type, MQTT 5 reason codes included.
	for rc, want := range map[byte]tlsdiag.Code{0x86: tlsdiag.CodeBadCredentials, 0x87: tlsdiag.CodeNotAuthorized,
		0x85: tlsdiag.CodeIdentifierRejected, 5: tlsdiag.CodeNotAuthorized} {
		err := fmt.Errorf("upstream: %w", &bridgeRefusal{code: rc})
		if d := tlsdiag.Diagnose(err, tlsx.Options{}, "b:1"); d.Code != want {
			t.Errorf("bridge refusal 0x%x: %q, want %q", rc, d.Code, want)
		}
	}
	cause, hint := tlsdiag.Explain(&tlsdiag.ConnackError{ReturnCode: 4}, tlsx.Options{}, "b:1")
	if !strings.Contains(cause, "bad user name or password") || hint == "" {
		t.Errorf("Explain: %q %q", cause, hint)
	}
}

// bridgeRefusal stands for bridge.RefusedError, which tlsdiag cannot import.
type bridgeRefusal struct{ code byte }

func (e *bridgeRefusal) Error() string     { return "refused" }
func (e *bridgeRefusal) ConnackCode() byte { return e.code }
