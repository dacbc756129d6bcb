package deadletter

import (
	"testing"
	"time"
)

// TestWatchRequests: a submitted request wakes the watch, a quiet
// directory does not, and Close closes C.
func TestWatchRequests(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.WatchRequests()
	if err != nil {
		t.Skipf("no inotify here: %v", err)
	}
	select {
	case <-w.C():
		t.Fatal("woken with nothing submitted")
	case <-time.After(200 * time.Millisecond): // a span in which nothing may happen
	}
	f, err := SubmitRequest(dir, Request{Op: "drop", All: true})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.C():
	case <-time.After(10 * time.Second):
		t.Fatal("not woken 10 s after a request was submitted")
	}
	if n, err := s.ServeRequests(func(Entry) error { return nil }); n != 1 || err != nil {
		t.Fatalf("served %d, %v", n, err)
	}
	if _, err := WaitResult(f, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-w.C():
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("C not closed 10 s after Close")
		}
	}
}
