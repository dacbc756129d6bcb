package bridge

import "testing"

func TestRuleMapping(t *testing.T) {
	rules := []Rule{
		{Pattern: "readings/#", Direction: Out, QoS: 1, RemotePrefix: "sites/s1/gw/"},
		{Pattern: "cmd/#", Direction: In, QoS: 1, LocalPrefix: "", RemotePrefix: "sites/s1/gw/"},
		{Pattern: "echo/#", Direction: Both, QoS: 2, LocalPrefix: "l/", RemotePrefix: "r/"},
	}
	if r, q, ok := outRule(rules, "readings/door"); !ok || r != "sites/s1/gw/readings/door" || q != 1 {
		t.Errorf("out: %q %d %v", r, q, ok)
	}
	if _, _, ok := outRule(rules, "cmd/relay"); ok {
		t.Error("an in rule matched outgoing")
	}
	if l, ok := inRule(rules, "sites/s1/gw/cmd/relay/set"); !ok || l != "cmd/relay/set" {
		t.Errorf("in: %q %v", l, ok)
	}
	if r, q, ok := outRule(rules, "l/echo/a"); !ok || r != "r/echo/a" || q != 2 {
		t.Errorf("both out: %q %d %v", r, q, ok)
	}
	if l, ok := inRule(rules, "r/echo/a"); !ok || l != "l/echo/a" {
		t.Errorf("both in: %q %v", l, ok)
	}
}
