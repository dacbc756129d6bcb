#!/usr/bin/env bash
# Instructions per QoS 1 message on the gateway's hot path (local PUBLISH ->
# embedded broker -> bridge -> outbox memory window -> upstream Mosquitto
# over mutual TLS -> PUBACK -> local PUBACK), counted by valgrind's
# cachegrind, so the figure does not depend on how loaded the machine is.
# Runs test/hotpath's BenchmarkQoS1RoundTrip for N1 and N2 messages and
# prints (instructions(N2) - instructions(N1)) / (N2 - N1): start-up,
# certificates and warm-up cancel out.
#   scripts/hotpath-instructions.sh [N1 [N2]]      (default 500 2500)
# GOMAXPROCS=1: under valgrind threads run one at a time anyway, and with a
# single P the count holds the work, not the scheduler's spinning (which
# depends on timing). asyncpreemptoff: valgrind mishandles Go's preemption
# signals. Needs valgrind and mosquitto (make deps).
set -euo pipefail
cd "$(dirname "$0")/.."
n1=${1:-500} n2=${2:-2500}
command -v valgrind >/dev/null || { echo "hotpath: valgrind is not installed (apt-get install -y valgrind)" >&2; exit 1; }
bin=$(mktemp -d)/hotpath.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
CGO_ENABLED=0 go test -c -o "$bin" ./test/hotpath/
ir() {
	GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1 timeout 600 valgrind --tool=cachegrind --cache-sim=no \
		--cachegrind-out-file=/dev/null "$bin" -test.run '^$' -test.bench QoS1RoundTrip -test.benchtime "${1}x" 2>&1 |
		sed -n 's/.*I *refs: *//p' | tr -d ,
}
a=$(ir "$n1")
b=$(ir "$n2")
[ -n "$a" ] && [ -n "$b" ] || { echo "hotpath: valgrind gave no count" >&2; exit 1; }
echo "instructions per message: $(((b - a) / (n2 - n1)))  ($n1 msgs: $a, $n2 msgs: $b)"
