package bridge

import (
	"fmt"
	"strings"

	mqtttopic "github.com/edgegw/edgegw/internal/topic"
)

// Direction says which way a rule carries messages.
type Direction int

// Directions, as in Mosquitto's `topic` bridge option.
const (
	Out Direction = 1 << iota
	In
	Both = Out | In
)

// ParseDirection reads "out", "in" or "both".
func ParseDirection(s string) (Direction, error) {
	switch s {
	case "out", "":
		return Out, nil
	case "in":
		return In, nil
	case "both":
		return Both, nil
	}
	return 0, fmt.Errorf("direction %q is not out, in or both", s)
}

// Rule is one bridge rule, like Mosquitto's
// `topic pattern direction qos local-prefix remote-prefix`: a local topic
// local_prefix+T matching pattern goes up as remote_prefix+T, and a remote
// topic remote_prefix+T comes down as local_prefix+T.
type Rule struct {
	Pattern      string
	Direction    Direction
	QoS          byte
	LocalPrefix  string
	RemotePrefix string
}

// localFilter is the filter local topics are matched against.
func (r Rule) localFilter() string { return r.LocalPrefix + r.Pattern }

// remoteFilter is what the bridge subscribes upstream for In rules.
func (r Rule) remoteFilter() string { return r.RemotePrefix + r.Pattern }

// outRule finds the first Out rule for a local topic and maps it.
func outRule(rules []Rule, topic string) (remote string, qos byte, ok bool) {
	for _, r := range rules {
		if r.Direction&Out == 0 || !strings.HasPrefix(topic, r.LocalPrefix) {
			continue
		}
		if Match(r.localFilter(), topic) {
			return r.RemotePrefix + strings.TrimPrefix(topic, r.LocalPrefix), r.QoS, true
		}
	}
	return "", 0, false
}

// inRule finds the first In rule for a remote topic and maps it.
func inRule(rules []Rule, topic string) (local string, ok bool) {
	for _, r := range rules {
		if r.Direction&In == 0 || !strings.HasPrefix(topic, r.RemotePrefix) {
			continue
		}
		if Match(r.remoteFilter(), topic) {
			return r.LocalPrefix + strings.TrimPrefix(topic, r.RemotePrefix), true
		}
	}
	return "", false
}

// Match reports whether an MQTT topic name matches a topic filter with +
// and # wildcards (see internal/topic).
func Match(filter, topic string) bool { return mqtttopic.Match(filter, topic) }

// RemoteTopic is the upstream name of a local topic under the first rule
// of direction dir (Out: what goes up; In: what comes down to it) whose
// local filter matches it.
func RemoteTopic(rules []Rule, local string, dir Direction) (string, bool) {
	for _, r := range rules {
		if r.Direction&dir == 0 || !strings.HasPrefix(local, r.LocalPrefix) {
			continue
		}
		if Match(r.localFilter(), local) {
			return r.RemotePrefix + strings.TrimPrefix(local, r.LocalPrefix), true
		}
	}
	return "", false
}
