package broker

import (
	"context"
	"log/slog"
)

// mochiLog is the handler mochi logs through. It drops records below min
// (mochi logs every connect at Info) and the attributes that dump a packet
// or a will (isMochiDumpKey): mochi's "error processing packet" line carries
// the whole packet, payload and a CONNECT's password included, and a
// client sending bad packets could fill the journal with its own bytes.
type mochiLog struct {
	h   slog.Handler
	min slog.Level
}

func (m mochiLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}

func (m mochiLog) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if !isMochiDumpKey(a.Key) {
			out.AddAttrs(a)
		}
		return true
	})
	return m.h.Handle(ctx, out)
}

func (m mochiLog) WithAttrs(as []slog.Attr) slog.Handler {
	keep := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if !isMochiDumpKey(a.Key) {
			keep = append(keep, a)
		}
	}
	return mochiLog{h: m.h.WithAttrs(keep), min: m.min}
}

func (m mochiLog) WithGroup(name string) slog.Handler {
	return mochiLog{h: m.h.WithGroup(name), min: m.min}
}
