package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/gateway/config"
)

// TestSecondInstanceOnDataDirRefused: without [upstream] (no outbox, whose
// own lock used to be the only one) a second gateway on the same data_dir
// must not start: it would hand out the same seq numbers.
func TestSecondInstanceOnDataDirRefused(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfgText := strings.ReplaceAll(simConfig, "@DIR@/data", data)
	_, _, stop, done := startGateway(t, cfgText, opsSettings{})

	second := func() error {
		path := filepath.Join(t.TempDir(), "gateway.toml")
		if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		g, err := Build(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errc := make(chan error, 1)
		ready := make(chan struct{})
		g.Ready = func() { close(ready) }
		go func() { errc <- g.Run(ctx) }()
		select {
		case err := <-errc:
			return err
		case <-ready:
			cancel()
			<-errc
			return nil
		}
	}
	err := second()
	want := fmt.Sprintf("data_dir %s is in use by another edgegw (process %d)", data, os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second instance: %v\nwant an error containing %q", err, want)
	}
	// Once the first one stops, the data_dir is free again.
	stop()
	select {
	case err := <-done:
		done <- err // startGateway's cleanup reads it too
	case <-time.After(15 * time.Second):
		t.Fatal("first gateway did not stop")
	}
	if err := second(); err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
}
