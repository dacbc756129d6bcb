package backoff

import (
	"testing"
	"time"
)

func TestCeiling(t *testing.T) {
	const ms = time.Millisecond
	cases := []struct {
		name    string
		lo, hi  time.Duration
		attempt int
		want    time.Duration
	}{
		{"first attempt waits lo", 250 * ms, 2 * time.Second, 0, 250 * ms},
		{"doubles", 250 * ms, 2 * time.Second, 2, time.Second},
		{"capped at hi", 250 * ms, 2 * time.Second, 4, 2 * time.Second},
		{"negative attempt is the first", 250 * ms, 2 * time.Second, -3, 250 * ms},
		{"huge attempt does not overflow", 250 * ms, time.Hour, 1 << 30, time.Hour},
		{"lo above hi gives hi", 5 * time.Second, time.Second, 0, time.Second},
		{"zero lo gives hi", 0, time.Second, 3, time.Second},
	}
	for _, c := range cases {
		if got := Ceiling(c.lo, c.hi, c.attempt); got != c.want {
			t.Errorf("%s: Ceiling(%v, %v, %d) = %v, want %v", c.name, c.lo, c.hi, c.attempt, got, c.want)
		}
	}
}

func TestDoubling(t *testing.T) {
	const ms = time.Millisecond
	d := Doubling{Min: 250 * ms, Max: 10 * time.Second}
	want := []time.Duration{250 * ms, 500 * ms, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := d.Next(); got != w {
			t.Fatalf("wait %d = %v, want %v", i, got, w)
		}
	}
	for range 100 { // stays at Max, never wraps
		if got := d.Next(); got != 10*time.Second {
			t.Fatalf("after many failures the wait is %v, want the maximum", got)
		}
	}
	d.Reset()
	if got := d.Next(); got != 250*ms {
		t.Fatalf("after Reset the wait is %v, want Min", got)
	}
}
