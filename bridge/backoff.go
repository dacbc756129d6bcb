package bridge

import (
	"errors"
	"math/rand/v2"
	"time"

	retry "github.com/edgegw/edgegw/internal/backoff"
)

// stableAfter is how long a session must stay up to count as stable: a
// connection that dies sooner (or that acknowledged nothing of what it was
// sent) is a flap, and the backoff goes on growing instead of starting over,
// so a broker that drops us right after CONNACK sees a handful of connects,
// not several a second.
const stableAfter = 10 * time.Second

// sessionEnd is how one session attempt ended.
type sessionEnd struct {
	connected bool          // CONNACK accepted us
	up        time.Duration // from CONNACK to the end
	sent      bool          // a QoS 1/2 PUBLISH or PUBREL went out
	acked     bool          // the server acknowledged something
	err       error
}

// kind classifies an end for the backoff.
type endKind int

const (
	endFailed  endKind = iota // no session (dial, TLS, no CONNACK)
	endRefused                // CONNACK with a refusal code
	endFlap                   // up, but briefly or without acknowledging anything
	endStable                 // up and useful for a while
)

func (e sessionEnd) kind() endKind {
	var ref *RefusedError
	switch {
	case !e.connected && errors.As(e.err, &ref):
		return endRefused
	case !e.connected:
		return endFailed
	case e.up < stableAfter || (e.sent && !e.acked):
		return endFlap
	}
	return endStable
}

// backoff is the reconnect policy's state.
type backoff struct {
	min, max time.Duration
	attempt  int
	rand     func(n int64) int64 // rand.Int64N; tests inject
}

// ceiling is the shared doubling rule (internal/backoff); the jitter and
// the policy per kind of end below are the bridge's own: many gateways
// reconnect to one upstream, and the server's answer says how to wait.
func (b *backoff) ceiling() time.Duration {
	return retry.Ceiling(b.min, b.max, b.attempt)
}

// next returns how long to wait after a session ended so.
//
//   - stable: the link was useful; come back quickly (at most min) and
//     start the backoff over;
//   - flap: count up and wait at least half the grown ceiling ("equal
//     jitter"), so the waits cannot shrink to nothing;
//   - refused: the server said no; retry at the ceiling (half to all of max);
//   - failed: count up, full jitter (zero to the ceiling), so a fleet that
//     lost the same broker does not come back in one wave.
func (b *backoff) next(k endKind) time.Duration {
	r := b.rand
	if r == nil {
		r = rand.Int64N
	}
	switch k {
	case endStable:
		b.attempt = 0
		return min(time.Duration(r(int64(b.ceiling())+1)), b.min)
	case endRefused:
		b.attempt = 20
	default:
		b.attempt++
	}
	c := b.ceiling()
	if k == endFailed {
		return time.Duration(r(int64(c) + 1))
	}
	return c/2 + time.Duration(r(int64(c/2)+1))
}
