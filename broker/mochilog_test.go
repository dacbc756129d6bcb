package broker

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestMochiLogDropsDumps: each attribute under which mochi logs a packet or
// a will is dropped, through Log and through With; the rest of the line
// and the level filter stay.
func TestMochiLogDropsDumps(t *testing.T) {
	cases := []struct {
		name string
		log  func(l *slog.Logger)
		want string // "" = nothing logged
	}{
		{"pk on error processing packet", func(l *slog.Logger) {
			l.Warn("error processing packet", "error", "bad", "client", "c1", "pk", "SECRET")
		}, `level=WARN msg="error processing packet" error=bad client=c1`},
		{"packet on a hook error", func(l *slog.Logger) {
			l.Error("publish packet error", "hook", "h", "packet", "SECRET")
		}, `level=ERROR msg="publish packet error" hook=h`},
		{"will on a will hook error", func(l *slog.Logger) {
			l.Error("parse will error", "will", "SECRET", "hook", "h")
		}, `level=ERROR msg="parse will error" hook=h`},
		{"through With", func(l *slog.Logger) {
			l.With("pk", "SECRET", "listener", "tcp").Warn("x")
		}, `level=WARN msg=x listener=tcp`},
		{"below the level", func(l *slog.Logger) {
			l.Info("client connected", "client", "c1")
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}})
			tc.log(slog.New(mochiLog{h: h, min: slog.LevelWarn}))
			if got := strings.TrimSpace(buf.String()); got != tc.want {
				t.Fatalf("logged %q, want %q", got, tc.want)
			}
		})
	}
}
