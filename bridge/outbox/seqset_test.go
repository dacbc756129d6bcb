package outbox

import (
	"math/rand/v2"
	"testing"
)

// TestSeqSetMatchesMap checks the span set against a plain map under
// random adds, trims and pops.
func TestSeqSetMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var q seqSet
	ref := map[uint64]bool{}
	var floor uint64
	for step := 0; step < 20000; step++ {
		switch rng.IntN(10) {
		case 0:
			floor += uint64(rng.IntN(20))
			q.trimBelow(floor)
			for k := range ref {
				if k < floor {
					delete(ref, k)
				}
			}
		case 1:
			nf := q.popFrom(floor)
			for x := floor; x < nf; x++ {
				if !ref[x] {
					t.Fatalf("popFrom(%d) = %d but %d not in set", floor, nf, x)
				}
				delete(ref, x)
			}
			floor = nf
		default:
			lo := floor + uint64(rng.IntN(300))
			hi := lo + 1 + uint64(rng.IntN(4))
			var want uint64
			for x := lo; x < hi; x++ {
				if !ref[x] {
					want++
					ref[x] = true
				}
			}
			if got := q.add(lo, hi); got != want {
				t.Fatalf("add(%d,%d) = %d, want %d", lo, hi, got, want)
			}
		}
		if q.n != uint64(len(ref)) {
			t.Fatalf("step %d: n = %d, map has %d", step, q.n, len(ref))
		}
		for i := 1; i < len(q.s); i++ {
			if q.s[i].lo <= q.s[i-1].hi || q.s[i].lo >= q.s[i].hi {
				t.Fatalf("spans not sorted, disjoint and non-adjacent: %v", q.s)
			}
		}
		x := floor + uint64(rng.IntN(320))
		if q.has(x) != ref[x] {
			t.Fatalf("has(%d) = %v", x, q.has(x))
		}
		lo := floor + uint64(rng.IntN(300))
		var c uint64
		for y := lo; y < lo+50; y++ {
			if ref[y] {
				c++
			}
		}
		if got := q.countIn(lo, lo+50); got != c {
			t.Fatalf("countIn = %d, want %d", got, c)
		}
	}
}
