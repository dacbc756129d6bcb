package extbroker

import (
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestEchoes(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	e := newEchoes(10*time.Second, 3, clk.now)

	e.add("a", []byte("1"))
	e.add("a", []byte("1"))
	if e.take("a", []byte("2")) || e.take("b", []byte("1")) {
		t.Fatal("took an echo with another payload or topic")
	}
	for i := 0; i < 2; i++ {
		if !e.take("a", []byte("1")) {
			t.Fatalf("two deliveries, two echoes expected; echo %d not taken", i+1)
		}
	}
	if e.take("a", []byte("1")) {
		t.Fatal("a third copy is not an echo")
	}

	// Bounded by max: the oldest is forgotten.
	for _, p := range []string{"1", "2", "3", "4"} {
		e.add("m", []byte(p))
	}
	if e.len() != 3 || e.take("m", []byte("1")) || !e.take("m", []byte("4")) {
		t.Fatalf("over max: %d awaited; want the oldest forgotten", e.len())
	}

	// Bounded by the window.
	clk.t = clk.t.Add(11 * time.Second)
	if e.take("m", []byte("2")) || e.len() != 0 {
		t.Fatalf("an echo older than the window was taken (%d awaited)", e.len())
	}

	// The queue of taken entries does not grow without bound.
	for i := 0; i < 1000; i++ {
		e.add("x", []byte("p"))
		if !e.take("x", []byte("p")) {
			t.Fatal("echo not taken")
		}
	}
	if len(e.fifo) > 4*e.max {
		t.Fatalf("fifo holds %d entries for max %d", len(e.fifo), e.max)
	}
}

func TestMatchAndValidFilter(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		want          bool
	}{
		{"readings/#", "readings/door", true},
		{"readings/#", "readings", true},
		{"readings/+", "readings/door/x", false},
		{"readings/+/set", "readings/door/set", true},
		{"#", "$edgegw/liveness", false},
		{"$edgegw/liveness", "$edgegw/liveness", true},
		{"a/b", "a/c", false},
	} {
		if got := match(c.filter, c.topic); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
	for f, want := range map[string]bool{"a/#": true, "+/b": true, "a/#/b": false, "a+": false, "": false, "#": true} {
		if validFilter(f) != want {
			t.Errorf("validFilter(%q) = %v", f, !want)
		}
	}
}

func TestAckQueueOrder(t *testing.T) {
	a := newAckQueue()
	s0, s1, s2 := a.reserve(), a.reserve(), a.reserve()
	a.done(s2, nil)
	if got := a.take(nil); len(got) != 0 || a.pending() != 3 {
		t.Fatalf("took %d with the head not done", len(got))
	}
	a.done(s0, nil)
	a.done(s1, nil)
	a.take(nil)
	if a.pending() != 0 {
		t.Fatalf("%d pending after all done", a.pending())
	}
	a.done(s1, nil) // late or repeated: ignored
}
