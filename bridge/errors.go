package bridge

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	connackcodes "github.com/edgegw/edgegw/internal/connack"
)

// RefusedError is a CONNACK refusal.
type RefusedError struct {
	Code    byte
	Version byte   // 4 or 5
	Reason  string // MQTT 5 reason string, if the server sent one
}

func (e *RefusedError) Error() string {
	var s string
	if text, ok := connackcodes.Text(e.Code); ok {
		s = "the server refused the connection: " + text
	} else if e.Version == 5 {
		s = "the server refused the connection: " + reasonText(e.Code, "")
	} else {
		s = "the server refused the connection with code " + strconv.Itoa(int(e.Code))
	}
	if e.Reason != "" {
		s += fmt.Sprintf(" (the server said %q)", e.Reason)
	}
	return s
}

// ConnackCode is the CONNACK return (3.1.1) or reason (5) code; tlsdiag
// recognises refusals by this method.
func (e *RefusedError) ConnackCode() byte { return e.Code }

// ErrNoConnack says that TCP (and TLS, on a TLS endpoint) worked but the
// server did not answer CONNECT with a CONNACK: it closed, sent something
// else, or nothing within the connect timeout.
type ErrNoConnack struct {
	Version byte          // the protocol level we spoke
	Got     string        // the packet received instead, if any
	Err     error         // the read error, if any
	Waited  time.Duration // how long we waited for CONNACK
}

func (e *ErrNoConnack) Error() string {
	var what string
	var ne net.Error
	var pe *errMalformed
	switch {
	case e.Got != "":
		what = "answered our MQTT CONNECT with " + e.Got + " instead of CONNACK"
	case errors.As(e.Err, &ne) && ne.Timeout():
		what = fmt.Sprintf("did not answer our MQTT CONNECT within %s", e.Waited)
	case errors.As(e.Err, &pe):
		what = "answered our MQTT CONNECT with bytes that are not MQTT (" + pe.Error() + ")"
	case errors.Is(e.Err, io.EOF) || errors.Is(e.Err, io.ErrUnexpectedEOF):
		what = "closed the connection without answering our MQTT CONNECT"
	default:
		what = fmt.Sprintf("failed before answering our MQTT CONNECT: %v", e.Err)
	}
	s := "the connection was made, but the server " + what
	if e.Version == 5 {
		s += "; a broker that does not speak MQTT 5 (RabbitMQ 3.x, Mosquitto before 1.6, many cloud gateways) does this to an MQTT 5 CONNECT: try protocol = \"3.1.1\""
	} else {
		s += "; the broker's log says why (a client id it refuses or that is in use, a certificate without a usable CN, an ACL)"
	}
	return s
}

func (e *ErrNoConnack) Unwrap() error { return e.Err }

// errMalformed is a packet from the server that cannot be MQTT.
type errMalformed struct{ msg string }

func (e *errMalformed) Error() string { return e.msg }
