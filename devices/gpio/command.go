package gpio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Command is a decoded gpio_out command.
type Command struct {
	// On is the state to set (for a pulse: the state during the pulse).
	On bool
	// Toggle inverts the current state instead of setting On.
	Toggle bool
	// Pulse, when positive, holds the state for this long and then sets the
	// opposite one.
	Pulse time.Duration
}

// ParseCommand decodes a command payload: plain "on", "off", "1", "0",
// "true", "false", "toggle", or JSON such as {"state":"on"},
// {"state":true}, {"pulse":"500ms"} (on for 500 ms, then off) or
// {"state":"off","pulse":"2s"}. maxPulse caps the pulse length.
func ParseCommand(payload []byte, maxPulse time.Duration) (Command, error) {
	p := bytes.TrimSpace(payload)
	if len(p) == 0 {
		return Command{}, fmt.Errorf("empty command; send on, off, toggle or {\"pulse\":\"500ms\"}")
	}
	if len(p) > 256 {
		return Command{}, fmt.Errorf("command of %d bytes is too long", len(p))
	}
	if p[0] != '{' {
		return parseState(strings.Trim(string(p), `"`))
	}
	var raw struct {
		State json.RawMessage `json:"state"`
		Pulse json.RawMessage `json:"pulse"`
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Command{}, fmt.Errorf("command %q: %v; use {\"state\":\"on\"} or {\"pulse\":\"500ms\"}", p, err)
	}
	c := Command{On: true}
	if raw.State != nil {
		var s any
		if err := json.Unmarshal(raw.State, &s); err != nil {
			return Command{}, fmt.Errorf("command state: %v", err)
		}
		var st string
		switch v := s.(type) {
		case string:
			st = v
		case bool:
			st = fmt.Sprint(v)
		case float64:
			st = fmt.Sprint(v)
		default:
			return Command{}, fmt.Errorf("command state %s: want \"on\", \"off\", true, false, 1 or 0", raw.State)
		}
		sc, err := parseState(st)
		if err != nil {
			return Command{}, err
		}
		c = sc
	}
	if raw.Pulse != nil {
		var d time.Duration
		var s string
		var ms float64
		switch {
		case json.Unmarshal(raw.Pulse, &s) == nil:
			v, err := time.ParseDuration(s)
			if err != nil {
				return Command{}, fmt.Errorf("command pulse %q: %v; use e.g. \"500ms\" or \"3s\"", s, err)
			}
			d = v
		case json.Unmarshal(raw.Pulse, &ms) == nil:
			d = time.Duration(ms * float64(time.Millisecond)) // a bare number is milliseconds
		default:
			return Command{}, fmt.Errorf("command pulse %s: use a duration such as \"500ms\"", raw.Pulse)
		}
		if d <= 0 {
			return Command{}, fmt.Errorf("command pulse %s: must be positive", d)
		}
		if d > maxPulse {
			return Command{}, fmt.Errorf("command pulse %s: longer than max_pulse %s", d, maxPulse)
		}
		if c.Toggle {
			return Command{}, fmt.Errorf("command: toggle cannot be combined with pulse")
		}
		c.Pulse = d
	} else if raw.State == nil {
		return Command{}, fmt.Errorf("command %q names neither state nor pulse", p)
	}
	return c, nil
}

func parseState(s string) (Command, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "1", "true", "high":
		return Command{On: true}, nil
	case "off", "0", "false", "low":
		return Command{On: false}, nil
	case "toggle":
		return Command{Toggle: true}, nil
	}
	return Command{}, fmt.Errorf("command state %q: want on, off, toggle, 1 or 0", s)
}
