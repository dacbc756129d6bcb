package ratelog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestHandler(t *testing.T) {
	type step struct {
		advance time.Duration
		logger  string // "a" or "b": two loggers made by With
		level   slog.Level
		msg     string
		n       int
	}
	cases := []struct {
		name  string
		steps []step
		want  []string // msg of each written line, "S<n>:<msg>" for a summary
	}{
		{
			name:  "a flood of one warning: burst, then one summary after the window",
			steps: []step{{logger: "a", level: slog.LevelWarn, msg: "unsolicited", n: 20000}, {advance: 11 * time.Second, logger: "a", level: slog.LevelWarn, msg: "unsolicited", n: 1}},
			want:  []string{"unsolicited", "unsolicited", "unsolicited", "unsolicited", "unsolicited", "S19995:unsolicited", "unsolicited"},
		},
		{
			name:  "info is never limited",
			steps: []step{{logger: "a", level: slog.LevelInfo, msg: "link up", n: 8}},
			want:  []string{"link up", "link up", "link up", "link up", "link up", "link up", "link up", "link up"},
		},
		{
			name:  "two loggers are counted apart",
			steps: []step{{logger: "a", level: slog.LevelWarn, msg: "x", n: 6}, {logger: "b", level: slog.LevelWarn, msg: "x", n: 1}},
			want:  []string{"x", "x", "x", "x", "x", "x"},
		},
		{
			name:  "a summary is written when another kind logs after the window",
			steps: []step{{logger: "a", level: slog.LevelError, msg: "e", n: 7}, {advance: 10 * time.Second, logger: "b", level: slog.LevelWarn, msg: "other", n: 1}},
			want:  []string{"e", "e", "e", "e", "e", "S2:e", "other"},
		},
		{
			name:  "no summary when nothing was suppressed",
			steps: []step{{logger: "a", level: slog.LevelWarn, msg: "w", n: 5}, {advance: time.Minute, logger: "a", level: slog.LevelWarn, msg: "w", n: 1}},
			want:  []string{"w", "w", "w", "w", "w", "w"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := &clock{t: time.Unix(1000, 0)}
			h := NewHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), Options{Now: c.now})
			root := slog.New(h)
			ls := map[string]*slog.Logger{"a": root.With("device", "a"), "b": root.With("device", "b")}
			for _, s := range tc.steps {
				c.t = c.t.Add(s.advance)
				for range s.n {
					ls[s.logger].Log(t.Context(), s.level, s.msg, "i", 1)
				}
			}
			var got []string
			for _, m := range lines(t, &buf) {
				if m["msg"] == "similar log lines suppressed" {
					got = append(got, "S"+jsonNum(m["suppressed"])+":"+m["message"].(string))
					continue
				}
				got = append(got, m["msg"].(string))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("written:\n %v\nwant:\n %v", got, tc.want)
			}
		})
	}
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestSuppressedCounter(t *testing.T) {
	var buf bytes.Buffer
	h := NewHandler(slog.NewTextHandler(&buf, nil), Options{Burst: 2})
	l := slog.New(h).With("component", "bridge")
	for range 10 {
		l.Warn("same")
	}
	if got := h.Suppressed(); got != 8 {
		t.Fatalf("Suppressed() = %d, want 8", got)
	}
	if n := strings.Count(buf.String(), "same"); n != 2 {
		t.Fatalf("%d lines written, want 2:\n%s", n, buf.String())
	}
}
