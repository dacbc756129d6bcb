package outbox

import "log/slog"

// episode logs drops of one reason once per episode: the first drop at Warn
// with what to do, the end (room again) at Info with the count.
type episode struct {
	reason string // Stats.Dropped key
	advice string
	active bool
	n      uint64
}

func (e *episode) drop(log *slog.Logger, n uint64, attrs ...any) {
	if n == 0 {
		return
	}
	if !e.active {
		e.active = true
		log.Warn("outbox: dropping messages", append([]any{"reason", e.reason, "what_to_do", e.advice}, attrs...)...)
	}
	e.n += n
}

func (e *episode) end(log *slog.Logger) {
	if !e.active {
		return
	}
	log.Info("outbox: drop episode ended", "reason", e.reason, "dropped", e.n)
	e.active, e.n = false, 0
}

// originKey is a 64-bit FNV-1a hash of a local client id and packet id:
// 16 bytes per remembered append instead of a copy of the client id (a
// false match needs a 64-bit collision within the window).
type originKey uint64

func makeOriginKey(origin string, pid uint16) originKey {
	h := uint64(14695981039346656037)
	for i := 0; i < len(origin); i++ {
		h = (h ^ uint64(origin[i])) * 1099511628211
	}
	h = (h ^ uint64(pid&0xff)) * 1099511628211
	h = (h ^ uint64(pid>>8)) * 1099511628211
	return originKey(h)
}

// recentIndex remembers the seq of the last recentWindow QoS 2 appends by
// (origin, packet id); older ones are evicted in append order.
type recentIndex struct {
	m    map[originKey]uint64
	keys []originKey
	seqs []uint64
	pos  int
}

func (r *recentIndex) add(k originKey, seq uint64) {
	if r.m == nil {
		r.m = make(map[originKey]uint64)
	}
	if len(r.keys) < recentWindow {
		r.keys = append(r.keys, k)
		r.seqs = append(r.seqs, seq)
	} else {
		if old := r.keys[r.pos]; r.m[old] == r.seqs[r.pos] {
			delete(r.m, old)
		}
		r.keys[r.pos], r.seqs[r.pos] = k, seq
		r.pos = (r.pos + 1) % recentWindow
	}
	r.m[k] = seq
}

// forget drops the entries whose seq is in [lo, hi): messages that were
// refused, so a resend of theirs is not taken for a duplicate.
func (r *recentIndex) forget(lo, hi uint64) {
	for k, s := range r.m {
		if s >= lo && s < hi {
			delete(r.m, k)
		}
	}
}

func (r *recentIndex) get(k originKey) (uint64, bool) {
	s, ok := r.m[k]
	return s, ok
}
