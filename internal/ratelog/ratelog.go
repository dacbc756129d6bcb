// Package ratelog keeps log lines that can repeat once per message from
// flooding the journal. Its slog.Handler lets the first Burst records of
// each kind through per Window and counts the rest; once the window has
// passed, it writes one summary line, "N similar log lines suppressed",
// carrying the suppressed line's message.
//
// A kind is a level and a message under one logger: records of the same
// message from loggers made by different With calls (two devices) are
// counted apart, so one noisy device does not silence another.
//
// Concurrency: Handle is safe from any goroutine. A handler and those made
// from it by With share one mutex, held only to count; the wrapped handler
// (and a due summary) is called after it is released, so a slow log sink
// never holds up another goroutine's counting.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Options configure a Handler. Zero values take the defaults.
type Options struct {
	// Window is the period each kind's Burst applies to (default 10 s).
	Window time.Duration
	// Burst is how many records of a kind pass per window (default 5).
	Burst int
	// Min is the lowest level limited (default slog.LevelWarn): Info and
	// Debug lines pass untouched.
	Min slog.Level
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
}

// maxKinds bounds the memory the limiter keeps; past it, kinds whose
// window has ended are forgotten first, then every kind.
const maxKinds = 1024

type key struct {
	ns    uint64
	level slog.Level
	msg   string
}

type kind struct {
	h          slog.Handler // the handler to write the summary with (its attributes)
	start      time.Time
	n          int
	suppressed int
}

type state struct {
	mu        sync.Mutex
	o         Options
	kinds     map[key]*kind
	nextNS    uint64
	lastSweep time.Time
	total     uint64
}

// Handler is a rate-limiting slog.Handler.
type Handler struct {
	next slog.Handler
	st   *state
	ns   uint64
}

// NewHandler wraps next.
func NewHandler(next slog.Handler, o Options) *Handler {
	if o.Window <= 0 {
		o.Window = 10 * time.Second
	}
	if o.Burst <= 0 {
		o.Burst = 5
	}
	if o.Min == 0 {
		o.Min = slog.LevelWarn
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Handler{next: next, st: &state{o: o, kinds: map[key]*kind{}}}
}

// Wrap returns a logger whose Warn and Error lines are rate-limited with
// the default options.
func Wrap(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(*Handler); ok {
		return l
	}
	return slog.New(NewHandler(l.Handler(), Options{}))
}

// Suppressed returns how many records the handler (and the handlers made
// from it by WithAttrs and WithGroup) has suppressed so far.
func (h *Handler) Suppressed() uint64 {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	return h.st.total
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(as), st: h.st, ns: h.st.newNS()}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), st: h.st, ns: h.st.newNS()}
}

func (s *state) newNS() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextNS++
	return s.nextNS
}

// summary is a suppressed kind whose window has ended.
type summary struct {
	h     slog.Handler
	level slog.Level
	msg   string
	n     int
}

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < h.st.o.Min {
		return h.next.Handle(ctx, r)
	}
	pass, due := h.st.admit(h, r)
	for _, s := range due {
		writeSummary(ctx, s)
	}
	if !pass {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func writeSummary(ctx context.Context, s summary) {
	rec := slog.NewRecord(time.Now(), s.level, "similar log lines suppressed", 0)
	rec.AddAttrs(slog.Int("suppressed", s.n), slog.String("message", s.msg))
	_ = s.h.Handle(ctx, rec)
}

// admit decides whether r passes and collects the summaries now due.
func (s *state) admit(h *Handler, r slog.Record) (bool, []summary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.Now()
	var due []summary
	if now.Sub(s.lastSweep) >= s.o.Window || len(s.kinds) >= maxKinds {
		s.lastSweep = now
		for k, kd := range s.kinds {
			if now.Sub(kd.start) < s.o.Window && len(s.kinds) < maxKinds {
				continue
			}
			if kd.suppressed > 0 {
				due = append(due, summary{h: kd.h, level: k.level, msg: k.msg, n: kd.suppressed})
			}
			delete(s.kinds, k)
		}
	}
	k := key{ns: h.ns, level: r.Level, msg: r.Message}
	kd := s.kinds[k]
	if kd != nil && now.Sub(kd.start) >= s.o.Window {
		if kd.suppressed > 0 {
			due = append(due, summary{h: kd.h, level: k.level, msg: k.msg, n: kd.suppressed})
		}
		kd = nil
	}
	if kd == nil {
		kd = &kind{h: h.next, start: now}
		s.kinds[k] = kd
	}
	kd.n++
	if kd.n <= s.o.Burst {
		return true, due
	}
	kd.suppressed++
	s.total++
	return false, due
}
