package duration

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "1500ms", want: 1500 * time.Millisecond},
		{in: "2h", want: 2 * time.Hour},
		{in: "0s", want: 0},
		{in: "3 days", wantErr: `"3 days" is not a duration (write it like "500ms"`},
		{in: "", wantErr: `"" is not a duration`},
		{in: "10", wantErr: `"10" is not a duration`}, // a bare number has no unit
		{in: "-1s", wantErr: `"-1s" is negative`},
	}
	for _, c := range cases {
		got, err := Parse(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("Parse(%q) error = %v, want it to contain %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("250ms")); err != nil || d.D() != 250*time.Millisecond {
		t.Fatalf("UnmarshalText(250ms) = %v, %v", d.D(), err)
	}
	if b, _ := d.MarshalText(); string(b) != "250ms" {
		t.Fatalf("MarshalText = %q, want 250ms", b)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil || d.D() != 250*time.Millisecond {
		t.Fatalf("a bad value must be refused and leave the old one: %v, %v", d.D(), err)
	}
}
