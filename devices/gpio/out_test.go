package gpio

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/edgegw/edgegw/devices"
)

// A relay board with an active-low input: "on" drives the line low.
func TestOutputCommandsDrivePinAndEmitState(t *testing.T) {
	p := fakePin(t)
	p.L = pgpio.Low // left energised by a previous run: start must switch it off
	dev := p.build(t, "gpio_out", `pin = "`+p.N+`"
active_low = true
initial = "off"`)
	r := start(t, dev)
	rd := r.next(t)
	if field(rd, "state") != false || field(rd, "cause") != "start" || level(p) != pgpio.High {
		t.Fatalf("start: %+v, line %v", rd, level(p))
	}
	cmd := dev.(devices.Commander)
	ctx := t.Context()

	steps := []struct {
		payload string
		state   bool
		line    pgpio.Level
	}{
		{`on`, true, pgpio.Low},
		{`{"state":"off"}`, false, pgpio.High},
		{`1`, true, pgpio.Low},
		{`{"state":false}`, false, pgpio.High},
		{`toggle`, true, pgpio.Low},
		{`{"state":"toggle"}`, false, pgpio.High},
	}
	for _, s := range steps {
		if err := cmd.Command(ctx, []byte(s.payload)); err != nil {
			t.Fatalf("%s: %v", s.payload, err)
		}
		// Command returns once the line is driven.
		if level(p) != s.line {
			t.Fatalf("%s: line %v; want %v", s.payload, level(p), s.line)
		}
		rd := r.next(t)
		if field(rd, "state") != s.state || field(rd, "cause") != "command" || field(rd, "level") != levelName(s.line) {
			t.Fatalf("%s: reading %+v", s.payload, rd)
		}
	}

	// A door strike: 50 ms pulse, then back off by itself.
	t0 := p.clock.Now()
	if err := cmd.Command(ctx, []byte(`{"pulse":"50ms"}`)); err != nil {
		t.Fatal(err)
	}
	if level(p) != pgpio.Low {
		t.Fatal("pulse did not switch on")
	}
	rd = r.next(t)
	if field(rd, "state") != true || field(rd, "pulse_ms") != int64(50) {
		t.Fatalf("pulse start %+v", rd)
	}
	p.clock.Advance(49 * time.Millisecond)
	if level(p) != pgpio.Low {
		t.Fatal("pulse ended before 50ms")
	}
	p.clock.Advance(time.Millisecond)
	rd = r.next(t)
	if field(rd, "state") != false || field(rd, "cause") != "pulse_end" || level(p) != pgpio.High {
		t.Fatalf("pulse end %+v, line %v", rd, level(p))
	}
	if el := rd.Time.Sub(t0); el != 50*time.Millisecond {
		t.Fatalf("pulse ended after %v; want 50ms", el)
	}

	// A command during a pulse ends it: no pulse_end follows.
	if err := cmd.Command(ctx, []byte(`{"pulse":"30s"}`)); err != nil {
		t.Fatal(err)
	}
	r.next(t)
	for _, c := range []string{"off", "on"} {
		if err := cmd.Command(ctx, []byte(c)); err != nil {
			t.Fatal(err)
		}
		if rd := r.next(t); field(rd, "cause") != "command" {
			t.Fatalf("after %s: %+v", c, rd)
		}
	}

	// Bad payloads are refused and counted; the line keeps its state.
	for _, bad := range []string{``, `dim`, `{"state":"maybe"}`, `{"pulse":"2h"}`, `{"pulse":"-1s"}`, `{"brightness":3}`, `{"state":"toggle","pulse":"1s"}`, `{`} {
		if err := cmd.Command(ctx, []byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if level(p) != pgpio.Low {
		t.Fatal("a refused command changed the line")
	}
	c := dev.(devices.Counter).Counters()
	if c["commands_rejected"] != 8 || c["commands"] != 10 {
		t.Fatalf("counters %v", c)
	}

	// Shutdown: the safe state (off, like initial) is driven and emitted.
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v on cancel", err)
	}
	if level(p) != pgpio.High {
		t.Fatal("safe state not driven on stop")
	}
	select { // emitted before Run returned
	case rd := <-r.readings:
		if field(rd, "cause") != "stop" || field(rd, "state") != false {
			t.Fatalf("stop reading %+v", rd)
		}
	default:
		t.Fatal("no reading for the safe state")
	}
	if err := cmd.Command(ctx, []byte("on")); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("command after stop: %v", err)
	}
}

// initial and safe_state differ: a fail-secure lock held on while running
// and released (on) on shutdown, here an LED lit on start and dark on stop.
func TestOutputInitialAndSafeState(t *testing.T) {
	p := fakePin(t)
	dev := p.build(t, "gpio_out", `pin = "`+p.N+`"
initial = "on"
safe_state = "off"`)
	if err := dev.(devices.Commander).Command(t.Context(), []byte("on")); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("command before start: %v", err)
	}
	r := start(t, dev)
	if rd := r.next(t); field(rd, "state") != true || level(p) != pgpio.High {
		t.Fatalf("start %+v line %v", rd, level(p))
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if level(p) != pgpio.Low {
		t.Fatal("safe state off not driven")
	}
}

// A command whose context ends while Run is not taking it returns promptly.
func TestOutputCommandContext(t *testing.T) {
	p := fakePin(t)
	dev := p.build(t, "gpio_out", `pin = "`+p.N+`"`)
	r := start(t, dev)
	r.next(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := dev.(devices.Commander).Command(ctx, []byte("on"))
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestOutputConfigErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{`pin = "GPIO5"
initial = "maybe"`, `initial: "maybe" is not a state`},
		{`pin = "GPIO5"
safe_state = "1"`, `safe_state: "1" is not a state`},
		{`pin = "GPIO5"
max_pulse = "48h"`, "max_pulse: 48h0m0s is out of range"},
		{`active_low = true`, "pin: missing"},
	}
	d, _ := devices.Lookup("gpio_out")
	for _, c := range cases {
		_, err := d.New(devices.Env{Name: "relay"}, tomlDecoder(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v; want %q", c.src, err, c.want)
		}
	}
}

func TestParseCommand(t *testing.T) {
	cases := []struct {
		in   string
		want Command
		err  string
	}{
		{"on", Command{On: true}, ""},
		{" OFF\n", Command{}, ""},
		{`"on"`, Command{On: true}, ""},
		{"0", Command{}, ""},
		{`{"state":"on"}`, Command{On: true}, ""},
		{`{"state":1}`, Command{On: true}, ""},
		{`{"state":true}`, Command{On: true}, ""},
		{`{"pulse":"500ms"}`, Command{On: true, Pulse: 500 * time.Millisecond}, ""},
		{`{"pulse":250}`, Command{On: true, Pulse: 250 * time.Millisecond}, ""},
		{`{"state":"off","pulse":"2s"}`, Command{Pulse: 2 * time.Second}, ""},
		{`{}`, Command{}, "names neither state nor pulse"},
		{`{"pulse":"fast"}`, Command{}, `pulse "fast"`},
		{`{"pulse":"2m"}`, Command{}, "longer than max_pulse"},
		{strings.Repeat("o", 300), Command{}, "too long"},
	}
	for _, c := range cases {
		got, err := ParseCommand([]byte(c.in), time.Minute)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err %v; want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}
