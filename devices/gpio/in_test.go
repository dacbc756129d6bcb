package gpio

import (
	"strings"
	"testing"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/edgegw/edgegw/devices"
)

// A door contact to ground with the pull-up: closed reads low. Contact bounce
// (five edges 1 ms apart) gives one debounced change, stamped at its first
// edge and published once the level has held for the debounce time; a 2 ms
// glitch gives none. All on a fake clock.
func TestInputDoorContactDebounce(t *testing.T) {
	p := fakePin(t)
	dev := p.build(t, "gpio_in", `pin = "`+p.N+`"
pull = "up"
active_low = true
debounce = "50ms"`)
	r := start(t, dev, p)
	t0 := p.clock.Now()

	rd := r.next(t) // initial state: the pull-up holds the line high → not active
	if field(rd, "state") != false || field(rd, "level") != "high" || field(rd, "edge") != nil {
		t.Fatalf("initial reading %+v", rd)
	}
	p.Lock()
	pull := p.P
	p.Unlock()
	if pull != pgpio.PullUp {
		t.Fatalf("pull = %v; want up", pull)
	}

	feed(t, p, time.Millisecond, pgpio.Low, pgpio.High, pgpio.Low, pgpio.High, pgpio.Low)
	// The last edge came at t0+4ms; 49 ms later the level has not held yet.
	p.clock.Advance(48 * time.Millisecond)
	select {
	case rd := <-r.readings:
		t.Fatalf("published before the debounce time: %+v", rd)
	default:
	}
	p.clock.Advance(time.Millisecond)
	rd = r.next(t)
	if field(rd, "state") != true || field(rd, "level") != "low" || field(rd, "edge") != "falling" || !rd.Time.Equal(t0) {
		t.Fatalf("after closing: %+v; want the falling edge stamped at its first edge %v", rd, t0)
	}

	opened := p.clock.Now()
	feed(t, p, 2*time.Millisecond, pgpio.High, pgpio.Low) // glitch: comes back within the debounce time
	feed(t, p, time.Millisecond, pgpio.High)              // door opens
	p.clock.Advance(50 * time.Millisecond)
	rd = r.next(t)
	if field(rd, "state") != false || field(rd, "level") != "high" || field(rd, "edge") != "rising" || !rd.Time.Equal(opened) {
		t.Fatalf("after opening: %+v; want stamped %v", rd, opened)
	}
	c := dev.(devices.Counter).Counters()
	// The glitch and the opening edge fall in one debounce window (the glitch
	// ended low, the opening came 1 ms later), so: 5 + 3 edges, 2 changes.
	if c["edges"] != 8 || c["changes"] != 2 {
		t.Fatalf("counters %v", c)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run returned %v on cancel; want nil", err)
	}
}

func TestInputGlitchCountedAsBounce(t *testing.T) {
	p := fakePin(t)
	dev := p.build(t, "gpio_in", `pin = "`+p.N+`"
pull = "down"
debounce = "50ms"`)
	r := start(t, dev, p)
	if rd := r.next(t); field(rd, "level") != "low" || field(rd, "state") != false {
		t.Fatalf("initial %+v", rd)
	}
	// A PIR line picking up a 0.5 ms spike, then 150 ms of quiet line, then
	// a real detection.
	feed(t, p, 500*time.Microsecond, pgpio.High, pgpio.Low)
	p.clock.Advance(150 * time.Millisecond)
	feed(t, p, 0, pgpio.High)
	p.clock.Advance(50 * time.Millisecond)
	rd := r.next(t)
	if field(rd, "edge") != "rising" || field(rd, "state") != true {
		t.Fatalf("detection %+v", rd)
	}
	if c := dev.(devices.Counter).Counters(); c["bounces"] != 1 || c["changes"] != 1 || c["edges"] != 3 {
		t.Fatalf("counters %v", c)
	}
}

func TestInputEdgeFilterAndNoDebounce(t *testing.T) {
	p := fakePin(t)
	dev := p.build(t, "gpio_in", `pin = "`+p.N+`"
pull = "down"
edge = "rising"
debounce = "0s"`)
	r := start(t, dev, p)
	r.next(t) // initial low
	feed(t, p, 2*time.Millisecond, pgpio.High, pgpio.Low, pgpio.High)
	for i := 0; i < 2; i++ { // two rising edges published, the falling one filtered
		rd := r.next(t)
		if field(rd, "edge") != "rising" || field(rd, "state") != true {
			t.Fatalf("reading %d: %+v", i, rd)
		}
	}
	c := dev.(devices.Counter).Counters()
	if c["filtered"] != 1 || c["changes"] != 3 || c["edges"] != 3 {
		t.Fatalf("counters %v", c)
	}
}

func TestInputInterval(t *testing.T) {
	p := fakePin(t)
	dev := p.build(t, "gpio_in", `pin = "`+p.N+`"
interval = "100ms"`)
	r := start(t, dev, p)
	first := r.next(t)
	for i := 1; i <= 3; i++ {
		p.waiting(t, 1) // the driver waits for the next tick
		step := 100 * time.Millisecond
		if i == 3 {
			step = 250 * time.Millisecond // a late wake-up: the grid holds, no burst of ticks
		}
		p.clock.Advance(step)
		rd := r.next(t)
		if field(rd, "edge") != nil || field(rd, "level") != "high" {
			t.Fatalf("periodic reading %+v", rd)
		}
		want := time.Duration(i) * 100 * time.Millisecond
		if i == 3 {
			want = 450 * time.Millisecond
		}
		if at := rd.Time.Sub(first.Time); at != want {
			t.Fatalf("periodic reading %d at %v; want %v", i, at, want)
		}
	}
	p.waiting(t, 1)
	p.clock.Advance(50 * time.Millisecond) // the grid: t0+500ms
	if rd := r.next(t); rd.Time.Sub(first.Time) != 500*time.Millisecond {
		t.Fatalf("after a late tick the next is at %v; want 500ms (on the grid)", rd.Time.Sub(first.Time))
	}
}

func TestInputConfigErrors(t *testing.T) {
	cases := []struct{ board, src, want string }{
		{"", ``, "pin: missing"},
		{"", `pin = "GPIO17"
pull = "sideways"`, `pull: "sideways" is not a pull`},
		{"", `pin = "GPIO17"
edge = "up"`, `edge: "up" is not an edge`},
		{"", `pin = "GPIO17"
debounce = "-1ms"`, `"-1ms" is negative`},
		{"", `pin = "GPIO17"
interval = "10ms"`, "interval: 10ms is too short"},
		{"rpi4", `pin = "P1_2"`, `pin: boards: Raspberry Pi 4 Model B has no GPIO at header position "P1_2"`},
	}
	d, _ := devices.Lookup("gpio_in")
	for _, c := range cases {
		_, err := d.New(devices.Env{Name: "door", Board: c.board}, tomlDecoder(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v; want %q", c.src, err, c.want)
		}
	}
	// A header name on a known board resolves to its line.
	dev, err := d.New(devices.Env{Name: "door", Board: "rpi4"}, tomlDecoder(`pin = "P1_11"`))
	if err != nil || dev.(*Input).line != "GPIO17" {
		t.Fatalf("P1_11 on rpi4: %v, %+v", err, dev)
	}
}

func TestInputMissingLine(t *testing.T) {
	dev := build(t, "gpio_in", `pin = "NO_SUCH_LINE"`)
	err := dev.Run(t.Context(), func(devices.Reading) {})
	if err == nil || !strings.Contains(err.Error(), `no GPIO line named "NO_SUCH_LINE"`) {
		t.Fatalf("err = %v", err)
	}
}
