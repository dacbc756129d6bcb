package load

import (
	"testing"
	"time"
)

func TestPayloadRoundTrip(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	for _, c := range []struct{ src, seq int }{{0, 0}, {7, 999_999}, {99, 123}} {
		p := Payload(c.src, c.seq, now)
		if len(p) != PayloadSize {
			t.Fatalf("payload %q is %d bytes, want %d", p, len(p), PayloadSize)
		}
		src, seq, ts, err := Parse(p)
		if err != nil || src != c.src || seq != c.seq || ts != now.UnixNano() {
			t.Fatalf("Parse(%q) = %d, %d, %d, %v", p, src, seq, ts, err)
		}
	}
	if _, _, _, err := Parse([]byte(`{"seq":1}`)); err == nil {
		t.Fatal("Parse accepted a payload without src and ts")
	}
}
