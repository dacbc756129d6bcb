// Package backoff is the one doubling rule for waits between retries: start
// at a minimum, double per failure, stop at a maximum. Three places retry in
// edgegw and share it: the bridge's upstream reconnect (which adds jitter and
// a policy per kind of failure, because a fleet of gateways must not come
// back to one broker in a wave), the external-broker client's first connect,
// and the supervision of a failed device driver (both local to the board,
// where nothing else competes, so their waits are the plain doubling).
//
// Concurrency: a Doubling belongs to one goroutine; Ceiling has no state.
package backoff

import "time"

// maxShift bounds the doubling so that min << attempt cannot overflow.
const maxShift = 20

// Ceiling is lo doubled attempt times, at most hi (and hi when lo is not
// positive or the doubling overflows): lo, 2lo, 4lo, … hi.
func Ceiling(lo, hi time.Duration, attempt int) time.Duration {
	c := lo << min(max(attempt, 0), maxShift)
	if c > hi || c <= 0 {
		c = hi
	}
	return c
}

// Doubling hands out Min, 2·Min, 4·Min, … up to Max, one wait per Next,
// until Reset starts it over. The zero value waits Max (0) every time: set
// Min and Max.
type Doubling struct {
	Min, Max time.Duration
	attempt  int
}

// Next returns the wait before the next attempt and doubles the one after.
func (d *Doubling) Next() time.Duration {
	w := Ceiling(d.Min, d.Max, d.attempt)
	if d.attempt < maxShift {
		d.attempt++
	}
	return w
}

// Reset makes the next wait Min again: the last attempt went well.
func (d *Doubling) Reset() { d.attempt = 0 }
