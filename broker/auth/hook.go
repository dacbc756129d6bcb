package auth

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Options configures the hook.
type Options struct {
	PasswordFile   string // Mosquitto password file; empty: no passwords
	ACLFile        string // Mosquitto acl_file; empty: every client may use every topic
	AllowAnonymous bool   // clients without a user name may connect
	// UseIdentityAsUsername takes the CN of a verified TLS client
	// certificate as the user name (Mosquitto's use_identity_as_username):
	// such a client needs no password. It applies to TLS connections only;
	// a TLS client without a certificate is refused.
	UseIdentityAsUsername bool
	Logger                *slog.Logger
}

// Hook is a mochi-mqtt hook that authenticates clients against a password
// file and checks every publish, subscription and delivery against an ACL.
// The broker's in-process (inline) client is always allowed.
type Hook struct {
	mqtt.HookBase
	o   Options
	pw  *Passwords
	acl *ACL
	log *slog.Logger

	refused atomic.Uint64
	denied  atomic.Uint64
}

var _ mqtt.Hook = (*Hook)(nil)

// NewHook loads the files named in o and returns the hook (a *Hook) to add
// with server.AddHook(h, nil). Add no other auth hook: mochi lets a client
// in if any hook allows it.
func NewHook(o Options) (mqtt.Hook, error) {
	h := &Hook{o: o, log: o.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.log = h.log.With("component", "broker-auth")
	var err error
	if o.PasswordFile != "" {
		if h.pw, err = LoadPasswordFile(o.PasswordFile); err != nil {
			return nil, err
		}
	}
	if o.ACLFile != "" {
		if h.acl, err = LoadACL(o.ACLFile); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// ID names the hook.
func (h *Hook) ID() string { return "edgegw-auth" }

// Provides says the hook authenticates and checks ACLs.
func (h *Hook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// Init accepts no configuration: it all comes through NewHook.
func (h *Hook) Init(config any) error {
	if config != nil {
		return fmt.Errorf("auth: hook takes no config; use NewHook")
	}
	return nil
}

// Stats returns how many connections were refused and how many ACL checks
// denied since start.
func (h *Hook) Stats() (refused, denied uint64) {
	return h.refused.Load(), h.denied.Load()
}

// OnConnectAuthenticate decides whether a client may connect.
func (h *Hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if cl.Net.Inline {
		return true
	}
	ok, why := h.authenticate(cl, pk)
	if !ok {
		h.refused.Add(1)
		h.log.Info("client refused", "client_id", cl.ID, "user", string(cl.Properties.Username),
			"remote", cl.Net.Remote, "reason", why)
	}
	return ok
}

func (h *Hook) authenticate(cl *mqtt.Client, pk packets.Packet) (bool, string) {
	if h.o.UseIdentityAsUsername {
		// The broker wraps each connection; a TLS one still tells its state.
		if tc, isTLS := cl.Net.Conn.(interface{ ConnectionState() tls.ConnectionState }); isTLS {
			certs := tc.ConnectionState().PeerCertificates
			if len(certs) == 0 || certs[0].Subject.CommonName == "" {
				return false, "use_identity_as_username: no client certificate with a CN"
			}
			cl.Properties.Username = []byte(certs[0].Subject.CommonName)
			return true, ""
		}
	}
	if !pk.Connect.UsernameFlag || len(pk.Connect.Username) == 0 {
		if h.o.AllowAnonymous {
			return true, ""
		}
		return false, "anonymous clients are not allowed"
	}
	if h.pw == nil {
		if h.o.AllowAnonymous {
			return true, ""
		}
		return false, "no password_file to check the user name against and anonymous clients are not allowed"
	}
	if !pk.Connect.PasswordFlag || !h.pw.Check(string(pk.Connect.Username), pk.Connect.Password) {
		return false, "bad user name or password"
	}
	return true, ""
}

// OnACLCheck decides whether a client may publish to (write) or subscribe
// to and receive from a topic.
func (h *Hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline || h.acl == nil {
		return true
	}
	if h.acl.Allowed(string(cl.Properties.Username), cl.ID, topic, write) {
		return true
	}
	h.denied.Add(1)
	h.log.Debug("acl denied", "client_id", cl.ID, "user", string(cl.Properties.Username),
		"topic", topic, "write", write)
	return false
}
