package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"

	_ "github.com/edgegw/edgegw/devices/all" // every driver
	"github.com/edgegw/edgegw/gateway"
	"github.com/edgegw/edgegw/gateway/config"
)

func init() {
	register(command{name: "run", summary: "run the gateway (default config " + config.DefaultPath + ")", run: runCmd})
	register(command{name: "check-config", summary: "check a configuration file and list every problem", run: checkConfigCmd})
}

// load reads the config and builds the gateway, printing every problem:
// those of the file and those of each device's own keys, in line order.
func load(path string, log *slog.Logger, stderr io.Writer) (*config.Config, *gateway.Gateway, int) {
	cfg, err := config.Load(path)
	if err != nil && cfg == nil {
		printConfigErrors(stderr, err)
		return nil, nil, exitConfig
	}
	var errs config.Errors
	errors.As(err, &errs)
	gw, berr := gateway.Build(cfg, log)
	var bes config.Errors
	if errors.As(berr, &bes) {
		for _, e := range bes {
			if !coveredBy(errs, e) {
				errs = append(errs, e)
			}
		}
	} else if berr != nil {
		errs = append(errs, &config.Error{File: path, Msg: berr.Error()})
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		printConfigErrors(stderr, errs)
		return nil, nil, exitConfig
	}
	return cfg, gw, exitOK
}

// coveredBy reports whether the file check already reported a problem in
// the same table as e (a missing cafile is not worth a second "cannot load
// TLS" line).
func coveredBy(errs config.Errors, e *config.Error) bool {
	for _, c := range errs {
		if e.Key != "" && strings.HasPrefix(c.Key, e.Key) {
			return true
		}
	}
	return false
}

func printConfigErrors(w io.Writer, err error) {
	var es config.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Fprintln(w, e.Error())
		}
		if len(es) > 1 {
			fmt.Fprintf(w, "%d problems found\n", len(es))
		}
		return
	}
	fmt.Fprintln(w, err)
}

func checkConfigCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", config.DefaultPath, "configuration file")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	_, _, code := load(*path, slog.New(slog.DiscardHandler), stderr)
	if code == exitOK {
		fmt.Fprintf(stdout, "%s: OK\n", *path)
	}
	return code
}

// newLogger makes the logger; it filters with lvar, set here from level, so
// SIGHUP can change the level later.
func newLogger(w io.Writer, level, format string, lvar *slog.LevelVar) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	lvar.Set(lv)
	opts := &slog.HandlerOptions{Level: lvar}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	if os.Getenv("JOURNAL_STREAM") != "" {
		// journald stamps the time itself.
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", config.DefaultPath, "configuration file")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigErrors(stderr, err)
		fmt.Fprintln(stderr, "edgegw: not starting; fix the configuration (edgegw check-config -c "+*path+")")
		return exitConfig
	}
	level := new(slog.LevelVar)
	log := newLogger(stderr, cfg.Gateway.LogLevel, cfg.Gateway.LogFormat, level)
	slog.SetDefault(log)
	gateway.Version = version
	gw, err := gateway.Build(cfg, log)
	if err != nil {
		printConfigErrors(stderr, err)
		fmt.Fprintln(stderr, "edgegw: not starting; fix the configuration (edgegw check-config -c "+*path+")")
		return exitConfig
	}
	gw.LogLevel = level
	defer startPprof(log)()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// Once ready, give back what start-up left resident, and again each
	// time the gateway falls idle (idletrim.go).
	tctx, tstop := context.WithCancel(ctx)
	var trims sync.WaitGroup
	gw.Ready = func() {
		trims.Go(func() {
			trimWhenIdle(tctx, log, idleTrimEvery, idleTrimBusyCPU, idleTrimGrowKiB, idleTrimMaxGap)
		})
	}
	err = gw.Run(ctx)
	tstop()
	trims.Wait()
	if err != nil {
		log.Error("edgegw stopped", "error", err)
		return exitFailure
	}
	return exitOK
}
