package defaults

import (
	"testing"
	"time"
)

func TestSet(t *testing.T) {
	cases := []struct {
		name      string
		v, d, out time.Duration
	}{
		{"unset takes the default", 0, time.Second, time.Second},
		{"negative takes the default", -time.Second, time.Second, time.Second},
		{"set stays", 2 * time.Second, time.Second, 2 * time.Second},
		{"smallest set value stays", 1, time.Second, 1},
	}
	for _, c := range cases {
		v := c.v
		Set(&v, c.d)
		if v != c.out {
			t.Errorf("%s: Set(%v, %v) gave %v, want %v", c.name, c.v, c.d, v, c.out)
		}
	}
	n := 0
	Set(&n, 1024)
	if n != 1024 {
		t.Errorf("Set on an int gave %d, want 1024", n)
	}
}
