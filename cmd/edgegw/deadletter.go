package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgegw/edgegw/bridge/deadletter"
	"github.com/edgegw/edgegw/bridge/outbox"
	"github.com/edgegw/edgegw/gateway"
	"github.com/edgegw/edgegw/gateway/config"
)

func init() {
	register(command{name: "deadletter", summary: "list, replay or drop the messages the upstream broker refused for good", run: deadLetterCmd})
}

const deadLetterUsage = `usage: edgegw deadletter [-c FILE] list
       edgegw deadletter [-c FILE] replay ID... | all
       edgegw deadletter [-c FILE] drop ID... | all

replay puts the messages back at the end of the outbox (fix the cause first:
the broker's ACL, its maximum packet size, the topic); drop deletes them.
While the gateway runs, the request goes through data_dir/deadletter/requests
and the gateway applies it within a second; otherwise it is applied at once.
`

func deadLetterCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deadletter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { io.WriteString(stderr, deadLetterUsage); fs.PrintDefaults() }
	path := fs.String("c", config.DefaultPath, "configuration file (for data_dir)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigErrors(stderr, err)
		return exitConfig
	}
	dir := gateway.DeadLetterDir(cfg.Gateway.DataDir)
	switch op := rest[0]; op {
	case "list":
		entries, err := deadletter.ReadDir(dir)
		if err != nil {
			fmt.Fprintf(stderr, "edgegw deadletter: %v\n", err)
			return exitFailure
		}
		printDeadLetters(stdout, entries)
		return exitOK
	case "replay", "drop":
		req := deadletter.Request{Op: op}
		for _, a := range rest[1:] {
			if a == "all" {
				req.All = true
				continue
			}
			id, err := strconv.ParseUint(a, 10, 64)
			if err != nil {
				fmt.Fprintf(stderr, "edgegw deadletter %s: %q is not an entry id (see edgegw deadletter list) or \"all\"\n", op, a)
				return exitUsage
			}
			req.IDs = append(req.IDs, id)
		}
		if !req.All && len(req.IDs) == 0 {
			fmt.Fprintf(stderr, "edgegw deadletter %s: name the entries (ids from edgegw deadletter list) or \"all\"\n", op)
			return exitUsage
		}
		res, err := applyDeadLetters(cfg, dir, req)
		if err != nil {
			fmt.Fprintf(stderr, "edgegw deadletter %s: %v\n", op, err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "replayed %d, dropped %d\n", res.Replayed, res.Dropped)
		for _, e := range res.Errors {
			fmt.Fprintln(stderr, e)
		}
		if len(res.Errors) > 0 {
			return exitFailure
		}
		return exitOK
	default:
		fmt.Fprintf(stderr, "edgegw deadletter: unknown operation %q\n", op)
		fs.Usage()
		return exitUsage
	}
}

// applyDeadLetters applies req itself when no gateway holds the outbox,
// else hands it to the running gateway and waits for its answer.
func applyDeadLetters(cfg *config.Config, dir string, req deadletter.Request) (deadletter.Result, error) {
	ob, err := outbox.Open(outbox.Options{
		Dir:      filepath.Join(cfg.Gateway.DataDir, "outbox"),
		MaxBytes: cfg.Buffer.MaxBytes.Bytes,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if errors.Is(err, syscall.EWOULDBLOCK) {
		// The gateway runs: it serves requests every second.
		f, err := deadletter.SubmitRequest(dir, req)
		if err != nil {
			return deadletter.Result{}, err
		}
		res, err := deadletter.WaitResult(f, 15*time.Second)
		if errors.Is(err, deadletter.ErrNotServed) {
			return res, fmt.Errorf("the gateway holds the outbox but did not take the request within 15s; it stays queued in %s and is applied when the gateway gets to it", f)
		}
		return res, err
	}
	if err != nil {
		return deadletter.Result{}, err
	}
	defer ob.Close()
	st, err := deadletter.Open(deadletter.Options{Dir: dir})
	if err != nil {
		return deadletter.Result{}, err
	}
	defer st.Close()
	return st.Apply(req, gateway.Requeue(ob)), nil
}

func printDeadLetters(w io.Writer, entries []deadletter.Entry) {
	if len(entries) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	fmt.Fprintf(w, "%-5s %-20s %-4s %-3s %7s  %s\n", "ID", "REFUSED AT (UTC)", "CODE", "QOS", "BYTES", "TOPIC / CAUSE")
	for _, e := range entries {
		fmt.Fprintf(w, "%-5d %-20s 0x%02x %-3d %7d  %s\n", e.ID, e.Time.UTC().Format("2006-01-02 15:04:05"), e.Code, e.QoS, len(e.Payload), e.Topic)
		fmt.Fprintf(w, "%37s  %s\n", "", strings.TrimSpace(e.Cause))
	}
	fmt.Fprintf(w, "%d dead letters; replay with: edgegw deadletter replay ID... | all\n", len(entries))
}
