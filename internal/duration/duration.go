// Package duration is the one rule for a duration written in a
// configuration: Go's syntax ("500ms", "30s", "5m", "2h"), never negative,
// and the one message that says so. The gateway's own keys
// (gateway/config.Duration, which keeps a bad value for validation to report
// with its line) and every driver's keys (Duration here, which refuses it
// at decoding; gateway/config names that error with the key's line) both
// parse with Parse. A bare number is refused: it has no unit.
//
// Concurrency: no state.
package duration

import (
	"fmt"
	"time"
)

// Parse reads s as a non-negative duration. The error quotes s and shows
// how to write one.
func Parse(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (write it like \"500ms\", \"30s\", \"5m\" or \"2h\")", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return v, nil
}

// Duration is a time.Duration written in TOML as a string such as "2s" or
// "250ms"; a bad value is an error at decoding.
type Duration time.Duration

// UnmarshalText parses with Parse.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as time.Duration does.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
