package pn532

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
)

// Type is the registered device type.
const Type = "pn532"

func init() {
	devices.Register(devices.Driver{
		Type:    Type,
		Summary: "NXP PN532 NFC reader over HSU (UART 115200): ISO 14443A tag UIDs (MIFARE, NTAG)",
		New: func(env devices.Env, decode devices.Decoder) (devices.Device, error) {
			var cfg Config
			if err := decode(&cfg); err != nil {
				return nil, err
			}
			return New(env, cfg)
		},
	})
}

// Config is the `[[device]]` table of a PN532.
type Config struct {
	serialport.Config
	// PollInterval is the pause between two InListPassiveTarget polls
	// (default 200ms).
	PollInterval serialport.Duration `toml:"poll_interval"`
	// Dedupe reports a tag held on the reader once per window (default 1s;
	// "0s" reports every poll that finds it).
	Dedupe *serialport.Duration `toml:"dedupe"`
}

// maxMisses is how many unanswered commands in a row make Run give up, so
// the supervisor reopens the port and wakes the PN532 again.
const maxMisses = 3

// Reader is a PN532 on a serial port.
type Reader struct {
	cfg    Config
	counts serialport.Counters
	dedupe devices.Deduper
	log    *slog.Logger
}

var (
	_ devices.Device  = (*Reader)(nil)
	_ devices.Counter = (*Reader)(nil)
)

// New validates cfg (no I/O).
func New(env devices.Env, cfg Config) (*Reader, error) {
	def := serialport.Defaults8N1(115200)
	cfg.Config = cfg.Config.WithDefaults(def)
	if cfg.PollInterval == 0 {
		cfg.PollInterval = serialport.Duration(200 * time.Millisecond)
	}
	var errs []error
	if err := cfg.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.PollInterval.D() < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("poll_interval: %s is too short (at least 10ms)", cfg.PollInterval.D()))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r := &Reader{cfg: cfg, log: env.Logger}
	r.dedupe.Window = time.Second
	if cfg.Dedupe != nil {
		r.dedupe.Window = cfg.Dedupe.D()
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r, nil
}

// Counters implements devices.Counter.
func (r *Reader) Counters() devices.Stats { return r.counts.Stats() }

// errNoAnswer marks a command the PN532 did not answer in time.
var errNoAnswer = errors.New("no answer")

// conn is one open session: the port, its reader goroutine's chunks, and the
// frame decoder.
type conn struct {
	r      *Reader
	port   interface{ Write([]byte) (int, error) }
	chunks chan []byte
	rerr   chan error
	dec    Decoder
}

// Run implements devices.Device.
func (r *Reader) Run(ctx context.Context, emit func(devices.Reading)) error {
	name := r.cfg.Port
	p, err := serialport.Open(r.cfg.Config)
	if err != nil {
		r.counts.Inc("open_failures")
		return err
	}
	c := &conn{r: r, port: p, chunks: make(chan []byte, 64), rerr: make(chan error, 1), dec: Decoder{Counts: &r.counts}}
	var wg sync.WaitGroup
	wg.Add(1)
	rctx, stop := context.WithCancel(ctx)
	go func() { // owns the reads; ends when the port is closed or fails
		defer wg.Done()
		c.rerr <- serialport.ReadAll(rctx, p, name, func(b []byte) {
			select {
			case c.chunks <- clone(b):
			case <-rctx.Done():
			}
		})
	}()
	defer func() {
		stop()
		wg.Wait()
	}()

	err = c.session(ctx, emit)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("pn532 on %s: %w", name, err)
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func (c *conn) session(ctx context.Context, emit func(devices.Reading)) error {
	// Wake up and configure: SAMConfiguration normal mode, timeout 1 s, IRQ
	// used (§7.2.10); then MxRtyPassiveActivation = 2 so that
	// InListPassiveTarget returns NbTg = 0 instead of waiting for a tag
	// (§7.3.1, CfgItem 5).
	if _, err := c.call(ctx, WakeUp, CmdSAMConfiguration, 0x01, 0x14, 0x01); err != nil {
		return fmt.Errorf("SAMConfiguration after wake-up: %w (check TX↔RX wiring and that the board's switches select HSU)", err)
	}
	if fw, err := c.call(ctx, nil, CmdGetFirmwareVersion); err == nil && len(fw) >= 6 {
		c.r.log.Info("pn532 ready", "port", c.r.cfg.Port, "ic", fmt.Sprintf("PN5%02X", fw[2]), "firmware", fmt.Sprintf("%d.%d", fw[3], fw[4]))
	} else if err != nil && !errors.Is(err, errNoAnswer) && !isReply(err) {
		return err
	}
	if _, err := c.call(ctx, nil, CmdRFConfiguration, 0x05, 0xFF, 0x01, 0x02); err != nil && !isReply(err) {
		return fmt.Errorf("RFConfiguration: %w", err)
	}
	misses := 0
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		tick.Reset(c.r.cfg.PollInterval.D())
		data, err := c.call(ctx, nil, CmdInListPassiveTarget, 0x01, 0x00)
		switch {
		case errors.Is(err, errNoAnswer):
			if misses++; misses >= maxMisses {
				return fmt.Errorf("%d polls unanswered: %w", misses, err)
			}
			continue
		case isReply(err):
			misses = 0
			continue // counted; the next poll tries again
		case err != nil:
			return err
		}
		misses = 0
		t, found, perr := ParseInList(data)
		if perr != nil {
			c.r.counts.Inc("bad_target")
			c.r.log.Debug("pn532 bad target data", "err", perr)
			continue
		}
		if !found {
			continue
		}
		uid := t.UIDHex()
		if c.r.dedupe.Seen(uid) {
			c.r.counts.Inc("duplicates_suppressed")
			continue
		}
		emit(devices.Reading{UID: uid, Fields: []devices.Field{
			{Name: "atqa", Value: fmt.Sprintf("%04X", t.SensRes)},
			{Name: "sak", Value: fmt.Sprintf("%02X", t.SelRes)},
		}})
	}
}

// replyError is a command the PN532 answered with a NACK, an error frame or
// an unexpected frame: counted, and the session goes on.
type replyError struct{ msg string }

func (e *replyError) Error() string { return e.msg }

func isReply(err error) bool {
	var re *replyError
	return errors.As(err, &re)
}

// call sends cmd (after pre, e.g. the wake-up bytes), waits for the ACK and
// then for the response, and returns the response's data (TFI first).
func (c *conn) call(ctx context.Context, pre []byte, cmd byte, params ...byte) ([]byte, error) {
	c.dec.Reset()
	frame := append(append([]byte(nil), pre...), Command(cmd, params...)...)
	if _, err := c.port.Write(frame); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	timeout := time.NewTimer(c.r.cfg.ReadTimeout.D())
	defer timeout.Stop()
	acked := false
	for {
		for {
			f, ok := c.dec.Next()
			if !ok {
				break
			}
			switch {
			case f.Kind == KindACK && !acked:
				acked = true
			case f.Kind == KindNACK:
				c.r.counts.Inc("nacks")
				return nil, &replyError{"NACK"}
			case f.Kind == KindError:
				c.r.counts.Inc("error_frames")
				return nil, &replyError{"error frame"}
			case f.Kind == KindInfo && len(f.Data) >= 2 && f.Data[0] == TFIPN532 && f.Data[1] == cmd+1:
				if !acked {
					c.r.counts.Inc("missing_ack") // the response is still good
				}
				return f.Data, nil
			default:
				c.r.counts.Inc("unexpected_frame")
				return nil, &replyError{"unexpected " + f.String()}
			}
		}
		select {
		case b := <-c.chunks:
			c.dec.Feed(b)
		case err := <-c.rerr:
			c.rerr <- err
			if err == nil {
				return nil, ctx.Err()
			}
			return nil, err
		case <-timeout.C:
			c.r.counts.Inc("timeouts")
			if acked {
				return nil, fmt.Errorf("command 0x%02X: ACK but %w within %s", cmd, errNoAnswer, c.r.cfg.ReadTimeout.D())
			}
			return nil, fmt.Errorf("command 0x%02X: %w within %s", cmd, errNoAnswer, c.r.cfg.ReadTimeout.D())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
