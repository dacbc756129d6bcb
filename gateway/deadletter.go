package gateway

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/edgegw/edgegw/bridge/deadletter"
	"github.com/edgegw/edgegw/bridge/outbox"
)

// DeadLetterDir is where the dead-letter store lives inside data_dir.
func DeadLetterDir(dataDir string) string { return filepath.Join(dataDir, "deadletter") }

// Requeue returns the function that puts a dead letter back into the
// outbox: at the end of the queue, as a new message (it is sent after what
// is queued now, so per-topic order with later messages is not kept for it).
func Requeue(ob *outbox.Outbox) func(deadletter.Entry) error {
	return func(e deadletter.Entry) error {
		q := e.QoS
		if q == 0 {
			q = 1 // kept for a reason: replay it with a guarantee
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := ob.Append(ctx, outbox.Message{Topic: e.Topic, QoS: q, Retain: e.Retain, Payload: e.Payload})
		return err
	}
}

// serveDeadLetters applies `edgegw deadletter replay|drop` requests until
// ctx ends: once at start (requests left while the gateway was down), then
// whenever the request directory's watch says one may have arrived, with
// a pass a minute in case a notification was lost. Without inotify it
// polls every second.
func serveDeadLetters(ctx context.Context, st *deadletter.Store, ob *outbox.Outbox, log *slog.Logger) {
	every := time.Minute
	var wake <-chan struct{}
	if w, err := st.WatchRequests(); err != nil {
		log.Debug("dead-letter requests polled every second", "error", err)
		every = time.Second
	} else {
		defer w.Close()
		wake = w.C()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	requeue := Requeue(ob)
	for {
		before := st.Stats().Entries
		n, err := st.ServeRequests(requeue)
		if err != nil {
			log.Warn("dead-letter requests cannot be served", "error", err)
		}
		if n > 0 {
			log.Info("dead-letter requests served", "requests", n, "held_before", before, "held_now", st.Stats().Entries)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case _, ok := <-wake:
			if !ok {
				wake = nil
				t.Reset(time.Second)
			}
		}
	}
}
