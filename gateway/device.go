package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/internal/backoff"
)

// deviceRunner supervises one device: it runs the driver, turns its
// readings into payloads, and restarts it with backoff when it fails, so an
// unplugged reader never takes the gateway down.
type deviceRunner struct {
	name, typ, topic string
	qos              byte
	dev              devices.Device
	log              *slog.Logger

	gwID string
	seqs *seqStore
	bk   localBroker

	readings atomic.Uint64
	failures atomic.Uint64
	// commandsDropped counts commands refused because commandQueue were
	// already waiting (shown as the device counter "commands_dropped").
	commandsDropped atomic.Uint64
	commander       atomic.Bool
	up              atomic.Bool
	emitMu          sync.Mutex // readings of one device are numbered and published in order
	buf             []byte

	errMu   sync.Mutex
	lastErr string

	heart *heart      // liveness of the publish step (ops.go)
	clock *stampClock // stamps readings, flags an unsynchronised clock (clock.go)

	avail deviceAvailability // online/offline (device_state.go)
}

const (
	restartMin = 250 * time.Millisecond
	restartMax = 10 * time.Second
)

func (d *deviceRunner) supervise(ctx context.Context) {
	wait := backoff.Doubling{Min: restartMin, Max: restartMax}
	var downSince time.Time
	lastMsg := ""
	for {
		started := time.Now()
		d.up.Store(true)
		if !downSince.IsZero() {
			d.log.Info("device back", "down_for", time.Since(downSince).Round(time.Millisecond))
			downSince = time.Time{}
			lastMsg = ""
		}
		endRun := d.avail.running()
		err := d.run(ctx)
		endRun()
		d.up.Store(false)
		if ctx.Err() != nil {
			return
		}
		d.avail.set(false)
		if err == nil {
			err = fmt.Errorf("driver stopped without an error")
		}
		d.failures.Add(1)
		d.errMu.Lock()
		d.lastErr = err.Error()
		d.errMu.Unlock()
		if time.Since(started) > restartMax {
			wait.Reset() // it ran fine for a while: start over
		}
		if downSince.IsZero() {
			downSince = time.Now()
		}
		retryIn := wait.Next()
		if err.Error() != lastMsg {
			d.log.Warn("device failed; retrying with backoff", "error", err, "retry_in", retryIn)
			lastMsg = err.Error()
		} else {
			d.log.Debug("device still failing", "error", err, "retry_in", retryIn)
		}
		t := time.NewTimer(retryIn)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// run calls the driver, turning a panic into an error: one bad driver must
// not take down the gateway and every other device.
func (d *deviceRunner) run(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("driver panicked (a bug; please report it): %v", r)
		}
	}()
	return d.dev.Run(ctx, d.emit)
}

func (d *deviceRunner) emit(r devices.Reading) {
	d.emitMu.Lock()
	defer d.emitMu.Unlock()
	d.heart.Enter() // liveness: publishing must not hang (ops.go)
	defer d.heart.Leave()
	d.avail.set(true)
	ts, uncertain := r.Time, false
	if d.clock != nil {
		ts, uncertain = d.clock.stamp(r.Time)
	} else if ts.IsZero() {
		ts = time.Now()
	}
	seq, err := d.seqs.next(d.name)
	if err != nil {
		d.log.Error("cannot save the sequence number; the reading is published but its seq may repeat after a restart", "error", err)
	}
	d.buf = encodeReading(d.buf[:0], d.gwID, d.name, d.typ, seq, ts, uncertain, r)
	payload := append([]byte(nil), d.buf...)
	if err := d.bk.Publish(broker.Message{Topic: d.topic, Payload: payload, QoS: d.qos}); err != nil {
		d.log.Error("reading not published", "seq", seq, "error", err)
		return
	}
	d.readings.Add(1)
	d.log.Debug("reading", "seq", seq, "uid", r.UID)
}

// commandQueue bounds the commands waiting for one device.
const commandQueue = 16

// subscribeCommands routes "<topic>/set" to a device that takes commands.
// Commands run one at a time, in order, on a goroutine of their own: the
// subscription callback runs on the publisher's goroutine (for commands from
// upstream, the bridge's reader), which must never wait for a relay.
func (d *deviceRunner) subscribeCommands(ctx context.Context, wg *sync.WaitGroup, bk localBroker, cmd devices.Commander) (func(), error) {
	filter := d.topic + "/set"
	q := make(chan broker.Message, commandQueue)
	cancel, err := bk.Subscribe(filter, func(m broker.Message) {
		select {
		case q <- m:
		default:
			d.commandsDropped.Add(1)
			d.log.Warn("command dropped: too many waiting", "topic", m.Topic, "queue", commandQueue)
		}
	})
	if err != nil {
		return nil, err
	}
	d.commander.Store(true)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-q:
				if err := cmd.Command(ctx, m.Payload); err != nil {
					d.log.Warn("command refused", "topic", m.Topic, "payload", string(m.Payload), "error", err)
				} else {
					d.log.Info("command done", "topic", m.Topic, "payload", string(m.Payload))
				}
			}
		}
	}()
	return cancel, nil
}

func (d *deviceRunner) status() DeviceStatus {
	d.errMu.Lock()
	last := d.lastErr
	d.errMu.Unlock()
	s := DeviceStatus{Name: d.name, Type: d.typ, Readings: d.readings.Load(), Failures: d.failures.Load(), Up: d.up.Load(), LastError: last}
	if c, ok := d.dev.(devices.Counter); ok {
		s.Counters = maps.Clone(c.Counters())
	}
	if d.commander.Load() {
		if s.Counters == nil {
			s.Counters = devices.Stats{}
		}
		s.Counters["commands_dropped"] = d.commandsDropped.Load()
	}
	return s
}
