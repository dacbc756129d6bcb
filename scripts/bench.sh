#!/usr/bin/env bash
# make bench: edgegw against Mosquitto's own bridge, side by side, in one run
# (issue 8), plus the large-backlog figures of issue 3. Writes
# bench/RESULTS.md and bench/results.png. Everything stays on loopback and
# the whole run is bounded (17 minutes inside the harness).
#   BENCH_QUICK=1            small sizes, one run (about two minutes)
#   BENCH_RUNS=n             runs per figure (default 3)
#   BENCH_ONLY=steady,outage,crash,qos2,fleet,backlog,wear,cpu,slow
#                            (wear, cpu, slow: the flash-wear, CPU-per-message and
#                            slow-board tables; wear and slow need root)
#   BENCH_KEEP=1             keep the work directory and logs
set -euo pipefail
cd "$(dirname "$0")/.."
command -v mosquitto >/dev/null || { echo "bench: mosquitto is not installed (make deps)" >&2; exit 1; }
[ -x bin/edgegw ] || { echo "bench: bin/edgegw missing (make build)" >&2; exit 1; }
# Many edgegw processes in the fleet workload: make sure we may open the files.
ulimit -n 65536 2>/dev/null || true
# bench/ is its own Go module (replace => ../), built from its directory.
(cd bench && CGO_ENABLED=0 go build -o ../bin/edgegw-bench .)
exec timeout 18m bin/edgegw-bench -out bench/RESULTS.md -png bench/results.png "$@"
