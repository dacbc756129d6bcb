package outbox

import (
	"slices"
	"sort"
)

// span is the half-open seq range [lo, hi).
type span struct{ lo, hi uint64 }

// seqSet is a set of seqs kept as sorted, disjoint, non-adjacent spans, so
// acks (mostly in order) and dropped ranges cost memory per gap, not per seq.
type seqSet struct {
	s []span
	n uint64 // seqs in the set
}

// search returns the index of the first span with hi >= x.
func (q *seqSet) search(x uint64) int {
	return sort.Search(len(q.s), func(i int) bool { return q.s[i].hi >= x })
}

func (q *seqSet) has(x uint64) bool {
	i := sort.Search(len(q.s), func(i int) bool { return q.s[i].hi > x })
	return i < len(q.s) && q.s[i].lo <= x
}

// add inserts [lo, hi) and reports how many seqs were new.
func (q *seqSet) add(lo, hi uint64) uint64 {
	if lo >= hi {
		return 0
	}
	i := q.search(lo) // first span that touches or follows lo
	j := i
	nlo, nhi := lo, hi
	var covered uint64
	for j < len(q.s) && q.s[j].lo <= hi {
		sp := q.s[j]
		// overlap between [lo,hi) and sp
		a, b := max(sp.lo, lo), min(sp.hi, hi)
		if b > a {
			covered += b - a
		}
		nlo, nhi = min(nlo, sp.lo), max(nhi, sp.hi)
		j++
	}
	added := (hi - lo) - covered
	switch j - i {
	case 0:
		q.s = slices.Insert(q.s, i, span{nlo, nhi})
	default:
		q.s[i] = span{nlo, nhi}
		q.s = slices.Delete(q.s, i+1, j)
	}
	q.n += added
	return added
}

// countIn returns how many seqs of [lo, hi) are in the set.
func (q *seqSet) countIn(lo, hi uint64) uint64 {
	var c uint64
	for i := q.search(lo); i < len(q.s) && q.s[i].lo < hi; i++ {
		a, b := max(q.s[i].lo, lo), min(q.s[i].hi, hi)
		if b > a {
			c += b - a
		}
	}
	return c
}

// trimBelow removes every seq < x.
func (q *seqSet) trimBelow(x uint64) {
	i := 0
	for i < len(q.s) && q.s[i].hi <= x {
		q.n -= q.s[i].hi - q.s[i].lo
		i++
	}
	if i < len(q.s) && q.s[i].lo < x {
		q.n -= x - q.s[i].lo
		q.s[i].lo = x
	}
	q.s = q.s[i:]
}

// popFrom removes the span starting exactly at x and returns its end, or x.
func (q *seqSet) popFrom(x uint64) uint64 {
	if len(q.s) > 0 && q.s[0].lo <= x && q.s[0].hi > x {
		hi := q.s[0].hi
		q.n -= hi - q.s[0].lo
		q.s = slices.Delete(q.s, 0, 1)
		return hi
	}
	return x
}

func (q *seqSet) spans() []span { return q.s }
func (q *seqSet) len() int      { return len(q.s) }
func (q *seqSet) reset()        { q.s, q.n = q.s[:0], 0 }
