package auth

import (
	"crypto/tls"
	"log/slog"
	"sync/atomic"
)

// Options configures the policy.
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

// Client is what the policy is told about a network client that connects.
type Client struct {
	ID     string // the client id
	Remote string // its address, for the log
	// TLS is the connection's TLS state; nil on a plain connection.
	TLS *tls.ConnectionState
	// HasUsername and HasPassword are the CONNECT's flags; Username and
	// Password what it carried.
	HasUsername, HasPassword bool
	Username, Password       []byte
}

// Policy authenticates clients against a password file and checks every
// publish, subscription and delivery against an ACL. The broker asks it
// from its access hook for network clients only (its own in-process
// clients are always allowed).
//
// Concurrency: a Policy does not change after New, so its methods take no
// lock and are safe from any goroutine; the broker calls them on each
// client's own read goroutine, concurrently for different clients. A
// password check costs one hash of the password (PBKDF2 with the file's
// iteration count for $7$) on that client's goroutine, and nobody else
// waits for it. The counters are atomic.
type Policy struct {
	o   Options
	pw  *Passwords
	acl *ACL
	log *slog.Logger

	refused atomic.Uint64
	denied  atomic.Uint64
}

// New loads the files named in o.
func New(o Options) (*Policy, error) {
	p := &Policy{o: o, log: o.Logger}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.log = p.log.With("component", "broker-auth")
	var err error
	if o.PasswordFile != "" {
		if p.pw, err = LoadPasswordFile(o.PasswordFile); err != nil {
			return nil, err
		}
	}
	if o.ACLFile != "" {
		if p.acl, err = LoadACL(o.ACLFile); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Stats returns how many connections were refused and how many ACL checks
// denied since start.
func (p *Policy) Stats() (refused, denied uint64) {
	return p.refused.Load(), p.denied.Load()
}

// Authenticate decides whether c may connect. It returns the user name the
// ACL knows the client by: the certificate's CN under
// UseIdentityAsUsername, else the CONNECT's user name.
func (p *Policy) Authenticate(c Client) (user string, ok bool) {
	user, ok, why := p.authenticate(c)
	if !ok {
		p.refused.Add(1)
		p.log.Info("client refused", "client_id", c.ID, "user", user, "remote", c.Remote, "reason", why)
	}
	return user, ok
}

func (p *Policy) authenticate(c Client) (string, bool, string) {
	user := string(c.Username)
	if p.o.UseIdentityAsUsername && c.TLS != nil {
		certs := c.TLS.PeerCertificates
		if len(certs) == 0 || certs[0].Subject.CommonName == "" {
			return user, false, "use_identity_as_username: no client certificate with a CN"
		}
		return certs[0].Subject.CommonName, true, ""
	}
	if !c.HasUsername || len(c.Username) == 0 {
		if p.o.AllowAnonymous {
			return user, true, ""
		}
		return user, false, "anonymous clients are not allowed"
	}
	if p.pw == nil {
		if p.o.AllowAnonymous {
			return user, true, ""
		}
		return user, false, "no password_file to check the user name against and anonymous clients are not allowed"
	}
	if !c.HasPassword || !p.pw.Check(user, c.Password) {
		return user, false, "bad user name or password"
	}
	return user, true, ""
}

// Allowed decides whether the client clientID, known as user, may publish
// to (write) or subscribe to and receive from (read) a topic.
func (p *Policy) Allowed(user, clientID, topic string, write bool) bool {
	if p.acl == nil {
		return true
	}
	if p.acl.Allowed(user, clientID, topic, write) {
		return true
	}
	p.denied.Add(1)
	p.log.Debug("acl denied", "client_id", clientID, "user", user, "topic", topic, "write", write)
	return false
}
