package auth

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	mqtttopic "github.com/edgegw/edgegw/internal/topic"
)

// access is a bit set of what a rule grants; deny overrides.
type access uint8

const (
	accessRead access = 1 << iota
	accessWrite
	accessDeny
)

type rule struct {
	access access
	topic  string // may hold %c and %u in patterns
	line   int
}

// ACL holds the rules of a Mosquitto acl_file.
type ACL struct {
	path      string
	anonymous []rule            // `topic` lines before any `user` line
	users     map[string][]rule // `topic` lines in a `user` section
	patterns  []rule            // `pattern` lines, for every client
}

// LoadACL reads a Mosquitto acl_file:
//
//	# comment
//	topic [read|write|readwrite|deny] <topic>    (before any user: clients without a user name)
//	user <name>
//	topic [read|write|readwrite|deny] <topic>    (for that user)
//	pattern [read|write|readwrite|deny] <topic>  (every client; %c = client id, %u = user name)
//
// The access defaults to readwrite. Errors name the file and line.
func LoadACL(path string) (*ACL, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: acl_file: %w", err)
	}
	defer f.Close()
	a := &ACL{path: path, users: map[string][]rule{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	line := 0
	user, inUser := "", false
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		keyword, rest, _ := strings.Cut(text, " ")
		rest = strings.TrimSpace(rest)
		switch keyword {
		case "user":
			if rest == "" {
				return nil, fmt.Errorf("auth: %s:%d: `user` needs a name", path, line)
			}
			user, inUser = rest, true
		case "topic", "pattern":
			r, err := parseRule(rest, line, keyword == "pattern")
			if err != nil {
				return nil, fmt.Errorf("auth: %s:%d: %w", path, line, err)
			}
			switch {
			case keyword == "pattern":
				a.patterns = append(a.patterns, r)
			case inUser:
				a.users[user] = append(a.users[user], r)
			default:
				a.anonymous = append(a.anonymous, r)
			}
		default:
			return nil, fmt.Errorf("auth: %s:%d: unknown keyword %q (want topic, user or pattern)", path, line, keyword)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: %s:%d: %w", path, line+1, err)
	}
	return a, nil
}

func parseRule(rest string, line int, pattern bool) (rule, error) {
	r := rule{access: accessRead | accessWrite, line: line, topic: rest}
	if word, topic, ok := strings.Cut(rest, " "); ok {
		acc, known := map[string]access{"read": accessRead, "write": accessWrite,
			"readwrite": accessRead | accessWrite, "deny": accessDeny}[word]
		if known {
			r.access, r.topic = acc, strings.TrimSpace(topic)
		}
	}
	if r.topic == "" || r.topic == "read" || r.topic == "write" || r.topic == "readwrite" || r.topic == "deny" {
		return rule{}, fmt.Errorf("rule needs a topic (topic [read|write|readwrite|deny] <topic>)")
	}
	if err := mqtttopic.ValidFilter(r.topic); err != nil {
		return rule{}, fmt.Errorf("topic %q: %w", r.topic, err)
	}
	if !pattern && (strings.Contains(r.topic, "%c") || strings.Contains(r.topic, "%u")) {
		return rule{}, fmt.Errorf("%%c and %%u are only substituted in `pattern` lines, not in `topic` %q", r.topic)
	}
	return r, nil
}

// Allowed reports whether the client may publish to (write) or subscribe
// to and receive from (read) topic. topic may be a subscription filter: its
// wildcards are then granted only by rules at least as wide. A matching
// deny rule wins; otherwise a matching rule must grant the access. The
// rules that apply: the user's section (or, without a user name, the lines
// before the first `user`) and every pattern.
func (a *ACL) Allowed(user, clientID, topic string, write bool) bool {
	want := accessRead
	if write {
		want = accessWrite
	}
	rules := a.anonymous
	if user != "" {
		rules = a.users[user]
	}
	granted := false
	check := func(r rule, filter string) bool {
		if !matches(filter, topic) {
			return true
		}
		if r.access&accessDeny != 0 {
			return false
		}
		if r.access&want != 0 {
			granted = true
		}
		return true
	}
	for _, r := range rules {
		if !check(r, r.topic) {
			return false
		}
	}
	for _, r := range a.patterns {
		filter, ok := substitute(r.topic, user, clientID)
		if !ok {
			continue
		}
		if !check(r, filter) {
			return false
		}
	}
	return granted
}

// substitute fills %c and %u. A rule with %u does not apply to a client
// without a user name, and ids or names holding wildcards never match
// (as in Mosquitto), so no one widens a pattern by choosing their name.
func substitute(pattern, user, clientID string) (string, bool) {
	if strings.Contains(pattern, "%u") {
		if user == "" || strings.ContainsAny(user, "+#/") {
			return "", false
		}
		pattern = strings.ReplaceAll(pattern, "%u", user)
	}
	if strings.Contains(pattern, "%c") {
		if clientID == "" || strings.ContainsAny(clientID, "+#/") {
			return "", false
		}
		pattern = strings.ReplaceAll(pattern, "%c", clientID)
	}
	return pattern, true
}

// matches reports whether the rule filter covers topic, which may itself be
// a filter: a '+' in topic is covered only by '+' or '#', and a '#' only by
// '#'. Topics starting with '$' are covered only by rules starting with '$'.
func matches(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") != strings.HasPrefix(filter, "$") {
		return false
	}
	f := strings.Split(filter, "/")
	t := strings.Split(topic, "/")
	for i, fl := range f {
		if fl == "#" {
			return true
		}
		if i >= len(t) {
			return false
		}
		switch tl := t[i]; {
		case tl == "#":
			return false
		case fl == "+":
		case tl == "+":
			return false
		case fl != tl:
			return false
		}
	}
	return len(f) == len(t)
}
