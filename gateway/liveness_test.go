package gateway

import (
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeNow is a settable clock for liveness.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeNow) add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func TestLivenessHearts(t *testing.T) {
	clk := &fakeNow{t: time.Unix(1000, 0)}
	l := newLiveness(clk.now)
	beat := l.beating("bridge", 10*time.Second)
	busy := l.busyHeart("device door", 5*time.Second)
	blocked := false
	excused := l.busyHeart("device held", 5*time.Second)
	excused.excused = func() bool { return blocked }

	steps := []struct {
		name string
		do   func()
		want []string
	}{
		{"fresh at start", func() {}, nil},
		{"idle for an hour: the busy hearts are fine, the beating one is not", func() { clk.add(time.Hour) }, []string{"bridge"}},
		{"a beat makes it fresh", func() { beat.Beat() }, nil},
		{"inside a short step", func() { busy.Enter(); clk.add(4 * time.Second) }, nil},
		{"stuck inside the step", func() { clk.add(2 * time.Second) }, []string{"device door"}},
		{"nested enter and one leave: still inside", func() { busy.Enter(); busy.Leave() }, []string{"device door"}},
		{"left the step", func() { busy.Leave() }, nil},
		{"a held reading, not excused", func() { beat.Beat(); excused.Enter(); clk.add(6 * time.Second) }, []string{"device held"}},
		{"excused while the buffer blocks", func() { blocked = true }, nil},
		{"beating heart stale again", func() { clk.add(5 * time.Second); blocked = false; excused.Leave() }, []string{"bridge"}},
	}
	for _, s := range steps {
		s.do()
		got := l.stale()
		if len(got) != len(s.want) || (len(got) > 0 && got[0] != s.want[0]) {
			t.Errorf("%s: stale = %v, want %v", s.name, got, s.want)
		}
	}
	var nilHeart *heart
	nilHeart.Beat() // a part without a heart (no upstream) must not crash
	nilHeart.Enter()
	nilHeart.Leave()
}

func TestBeatConnBeatsOnTraffic(t *testing.T) {
	clk := &fakeNow{t: time.Unix(1000, 0)}
	l := newLiveness(clk.now)
	h := l.beating("bridge", time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("pong"))
			c.Close()
		}
	}()
	clk.add(time.Hour)
	nc, err := beatDialer(h)(t.Context(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if s := l.stale(); len(s) != 0 {
		t.Fatalf("dialing did not beat: %v", s)
	}
	clk.add(time.Hour)
	buf := make([]byte, 4)
	if _, err := nc.Read(buf); err != nil {
		t.Fatal(err)
	}
	if s := l.stale(); len(s) != 0 {
		t.Fatalf("a read did not beat: %v", s)
	}
}

// TestBeatConnIsASocket: the bridge writes a small message at once only
// over a kernel socket (syscall.Conn); the heart's wrapper must not hide
// the TCP socket under it.
func TestBeatConnIsASocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := beatDialer(newLiveness(time.Now).beating("bridge", time.Second))(t.Context(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sc, ok := nc.(syscall.Conn)
	if !ok {
		t.Fatalf("%T does not implement syscall.Conn", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		t.Fatalf("no socket under the connection: fd %d, %v", fd, err)
	}
}

func TestNewNotifier(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/notify.sock"
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	abstract := "@edgegw-test-" + strconv.Itoa(os.Getpid())
	aconn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: abstract, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer aconn.Close()
	self := strconv.Itoa(os.Getpid())
	cases := []struct {
		name     string
		env      map[string]string
		wantNil  bool
		wantErr  bool
		watchdog time.Duration
		recv     *net.UnixConn
	}{
		{"not under systemd", map[string]string{}, true, false, 0, nil},
		{"socket, no watchdog", map[string]string{"NOTIFY_SOCKET": path}, false, false, 0, conn},
		{"abstract socket", map[string]string{"NOTIFY_SOCKET": abstract}, false, false, 0, aconn},
		{"watchdog 60s: ping every 30s", map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000000"}, false, false, 30 * time.Second, conn},
		{"watchdog for this pid", map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": self}, false, false, time.Second, conn},
		{"watchdog for another pid (a child)", map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, false, false, 0, conn},
		{"bad WATCHDOG_USEC", map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "sixty"}, false, true, 0, nil},
		{"relative socket path", map[string]string{"NOTIFY_SOCKET": "notify.sock"}, false, true, 0, nil},
		{"socket nobody listens on", map[string]string{"NOTIFY_SOCKET": dir + "/none.sock"}, false, true, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := NewNotifier(func(k string) string { return c.env[k] })
			if c.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.wantNil {
				if n != nil {
					t.Fatal("a notifier without NOTIFY_SOCKET")
				}
				if err := n.Send("READY=1"); err != nil { // a nil notifier is a no-op
					t.Fatal(err)
				}
				return
			}
			defer n.Close()
			if n.Watchdog != c.watchdog {
				t.Errorf("Watchdog = %v, want %v", n.Watchdog, c.watchdog)
			}
			if err := n.Send("READY=1\nSTATUS=ok"); err != nil {
				t.Fatal(err)
			}
			c.recv.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 256)
			k, err := c.recv.Read(buf)
			if err != nil || string(buf[:k]) != "READY=1\nSTATUS=ok" {
				t.Errorf("received %q, %v", buf[:k], err)
			}
		})
	}
}
