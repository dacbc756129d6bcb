package main

import (
	"log/slog"
	"os"
	"runtime/pprof"
)

// startPprof writes a CPU profile of the whole run to the file named in
// EDGEGW_PPROF, for benchmarks (bench/, make bench); the returned stop
// finishes it when the gateway stops. It is deliberately not a config key:
// profiling is a developer's tool. A file rather than net/http/pprof keeps
// the shipped binary small (the HTTP profiler adds about 0.5 MB) and opens
// no port.
func startPprof(log *slog.Logger) (stop func()) {
	path := os.Getenv("EDGEGW_PPROF")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Warn("EDGEGW_PPROF: cannot create the profile", "error", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		log.Warn("EDGEGW_PPROF: cannot profile", "error", err)
		return func() {}
	}
	log.Info("writing a CPU profile (EDGEGW_PPROF)", "file", path)
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Warn("EDGEGW_PPROF: profile not saved", "error", err)
		}
	}
}
