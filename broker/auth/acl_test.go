package auth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgegw/edgegw/broker/auth"
)

const aclText = `# edgegw test ACL, Mosquitto syntax
topic read public/#

user alice
topic readwrite alice/#
topic read readings/#
topic deny readings/secret

user bob
topic write readings/#
topic secret/#

pattern readwrite devices/%c/#
pattern read users/%u/inbox
`

func writeACL(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestACLRules(t *testing.T) {
	a, err := auth.LoadACL(writeACL(t, aclText))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		user, client, topic string
		write, want         bool
	}{
		{"", "anon", "public/news", false, true},
		{"", "anon", "public/news", true, false},
		{"alice", "c1", "public/news", false, false}, // anonymous rules are not alice's
		{"alice", "c1", "alice/x/y", true, true},
		{"alice", "c1", "alice", false, true}, // alice/# covers alice
		{"alice", "c1", "readings/door", false, true},
		{"alice", "c1", "readings/door", true, false},
		{"alice", "c1", "readings/secret", false, false}, // deny wins
		{"alice", "c1", "readings/#", false, true},       // as in Mosquitto: the subscription is allowed, readings/secret is withheld at delivery
		{"alice", "c1", "readings/+", false, true},
		{"alice", "c1", "alice/#", false, true},
		{"alice", "c1", "#", false, false},
		{"alice", "c1", "+/x", false, false},
		{"alice", "c1", "alice/+/x", false, true},
		{"bob", "c2", "readings/door", true, true},
		{"bob", "c2", "readings/door", false, false},
		{"bob", "c2", "secret/a", false, true}, // access defaults to readwrite
		{"bob", "c2", "secret/a", true, true},
		{"bob", "gw-01", "devices/gw-01/temp", true, true},
		{"bob", "gw-01", "devices/gw-02/temp", true, false},
		{"", "gw-01", "devices/gw-01/temp", false, true}, // patterns apply to anonymous clients too
		{"bob", "gw-01", "devices/+/temp", false, false},
		{"bob", "a+b", "devices/a+b/x", false, false}, // a wildcard in a client id never matches
		{"carol", "c3", "users/carol/inbox", false, true},
		{"carol", "c3", "users/alice/inbox", false, false},
		{"", "c3", "users//inbox", false, false},
		{"alice", "c1", "$SYS/broker/uptime", false, false},
		{"mallory", "c9", "alice/x", false, false},
	}
	for _, c := range cases {
		if got := a.Allowed(c.user, c.client, c.topic, c.write); got != c.want {
			t.Errorf("Allowed(user %q, client %q, %q, write=%v) = %v, want %v", c.user, c.client, c.topic, c.write, got, c.want)
		}
	}
}

func TestACLErrors(t *testing.T) {
	cases := []struct{ text, want string }{
		{"user alice\ntopic\n", ":2: rule needs a topic"},
		{"topc read a/b\n", ":1: unknown keyword \"topc\""},
		{"\n\nuser\n", ":3: `user` needs a name"},
		{"topic read a/#/b\n", ":1: topic \"a/#/b\": '#' must be a whole last level"},
		{"topic read a/b+\n", "'+' must be a whole level"},
		{"topic read devices/%c\n", ":1: %c and %u are only substituted in `pattern` lines"},
	}
	for _, c := range cases {
		path := writeACL(t, c.text)
		_, err := auth.LoadACL(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.text, err, c.want)
		}
	}
}
