package gateway

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notifier speaks systemd's notify protocol (sd_notify(3)): one datagram per
// message on the unix socket named by $NOTIFY_SOCKET. It is written here in
// a few lines rather than taken from a library: no cgo, no dependency.
type Notifier struct {
	conn *net.UnixConn
	// Watchdog is half the interval systemd expects pings at
	// ($WATCHDOG_USEC/2), or 0 when the watchdog is off.
	Watchdog time.Duration
}

// NewNotifier connects to $NOTIFY_SOCKET as given in env (os.Getenv when
// nil). It returns nil and no error when the socket is not set: the gateway
// is not run by systemd with Type=notify.
func NewNotifier(getenv func(string) string) (*Notifier, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil, nil
	}
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
		return nil, fmt.Errorf("notify: NOTIFY_SOCKET=%q is not a unix socket path", path)
	}
	// Go maps a leading '@' to the abstract namespace itself.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	n := &Notifier{conn: conn}
	if us := getenv("WATCHDOG_USEC"); us != "" {
		v, err := strconv.ParseUint(us, 10, 63)
		pid := getenv("WATCHDOG_PID")
		switch {
		case err != nil || v == 0:
			conn.Close()
			return nil, fmt.Errorf("notify: WATCHDOG_USEC=%q is not a positive number of microseconds", us)
		case pid == "" || pid == strconv.Itoa(os.Getpid()):
			n.Watchdog = time.Duration(v) * time.Microsecond / 2
		}
	}
	return n, nil
}

// Send sends one or more newline-separated assignments, e.g. "READY=1".
func (n *Notifier) Send(state string) error {
	if n == nil {
		return nil
	}
	_, err := n.conn.Write([]byte(state))
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// Close closes the socket.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	return n.conn.Close()
}

// statusLine is the STATUS= text systemctl status shows: link state and
// backlog in a few words.
func statusLine(s Status) string {
	var b strings.Builder
	if !s.Ready {
		b.WriteString("starting")
	} else {
		b.WriteString("running")
	}
	up := 0
	for _, d := range s.Devices {
		if d.Up {
			up++
		}
	}
	fmt.Fprintf(&b, "; devices %d/%d up", up, len(s.Devices))
	if br := s.Bridge; br != nil {
		if br.LinkUp {
			fmt.Fprintf(&b, "; upstream up (%s)", br.Endpoint)
		} else {
			b.WriteString("; upstream DOWN")
		}
		fmt.Fprintf(&b, "; backlog %d msgs, %s", br.Outbox.Messages, humanBytes(br.Outbox.Bytes))
	} else {
		b.WriteString("; no upstream")
	}
	fmt.Fprintf(&b, "; %d local clients", s.Broker.Clients)
	return b.String()
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return strconv.FormatUint(n, 10) + " B"
}
