#!/usr/bin/env bash
# make demo: the whole main job on one machine. It makes certificates, starts
# a Mosquitto "upstream" that demands client certificates (mutual TLS), runs
# edgegw with simulated devices, and shows the readings arriving upstream
# until Ctrl-C (or for DEMO_SECONDS). Everything it starts it stops, and its
# temporary directory is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${EDGEGW:-bin/edgegw}
WORK=$(mktemp -d /tmp/edgegw-demo.XXXXXX)
pids=() names=()
# stop PID NAME: SIGTERM, at most 5 s to exit, then SIGKILL. No wait here is
# unbounded: stopped from a script (a SIGINT to the process group, which
# background jobs of a non-interactive shell ignore), a child that does not
# exit on SIGTERM must not hang the demo.
stop() {
  local p=$1 name=$2
  if kill -TERM "$p" 2>/dev/null; then
    for _ in $(seq 1 50); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
      echo "demo: $name did not stop within 5s of SIGTERM; killing it" >&2
      kill -KILL "$p" 2>/dev/null || true
    fi
  fi
  wait "$p" 2>/dev/null || true
}
# cleanup stops in reverse order of start: the viewer first (while the
# upstream it is connected to still runs), then the gateway, then the upstream.
cleanup() {
  trap - EXIT INT TERM
  for (( i=${#pids[@]}-1; i>=0; i-- )); do stop "${pids[$i]}" "${names[$i]}"; done
  rm -rf "$WORK"
  echo "demo: stopped and cleaned up"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

freeport() {
  local p
  for _ in $(seq 1 100); do
    p=$(( 20000 + RANDOM % 20000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "demo: no free port found" >&2; exit 1
}
waitport() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: nothing listens on port $1 after 10s" >&2; return 1
}

UP=$(freeport); LOCAL=$(freeport)
echo "demo: making certificates (CA, server 'localhost', clients 'gw-01' and 'viewer') in $WORK/pki"
"$BIN" certs init --dir "$WORK/pki" --server-name localhost --server-name 127.0.0.1 \
  --client-name gw-01 --client-name viewer >"$WORK/certs.out"

cat >"$WORK/mosquitto.conf" <<CONF
per_listener_settings false
$( [ "$(id -u)" -eq 0 ] && echo "user root" )
persistence false
log_dest file $WORK/mosquitto.log
listener $UP 127.0.0.1
cafile $WORK/pki/ca.crt
certfile $WORK/pki/server.crt
keyfile $WORK/pki/server.key
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
allow_anonymous false
CONF
mosquitto -c "$WORK/mosquitto.conf" & pids+=($!) names+=("the upstream mosquitto")
waitport "$UP"
echo "demo: upstream Mosquitto with mutual TLS on 127.0.0.1:$UP"

cat >"$WORK/gateway.toml" <<CONF
[gateway]
id = "gw-01"
data_dir = "$WORK/data"
http_listen = ""

[broker]
listen = "127.0.0.1:$LOCAL"

[upstream]
address = "mqtts://localhost:$UP"
[upstream.tls]
cafile = "$WORK/pki/ca.crt"
certfile = "$WORK/pki/gw-01.crt"
keyfile = "$WORK/pki/gw-01.key"
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = 1
remote_prefix = "sites/demo/gw-01/"

[availability]                    # online/offline of the gateway and each device, retained
enabled = true

[[device]]
name = "door"
type = "sim"
kind = "rfid"
interval = "1s"

[[device]]
name = "climate"
type = "sim"
kind = "sensor"
interval = "2s"
CONF
"$BIN" check-config -c "$WORK/gateway.toml"
"$BIN" run -c "$WORK/gateway.toml" 2>"$WORK/gateway.log" & pids+=($!) names+=("edgegw")
waitport "$LOCAL"
echo "demo: edgegw running (local broker 127.0.0.1:$LOCAL, log $WORK/gateway.log)"
echo "demo: availability: sites/demo/gw-01/status (the gateway: online, or offline as its Last Will)"
echo "demo:               sites/demo/gw-01/status/<device> (each device: offline while its port is gone)"
echo "demo: readings and states as the upstream broker sees them (Ctrl-C to stop):"
mosquitto_sub -h localhost -p "$UP" --cafile "$WORK/pki/ca.crt" \
  --cert "$WORK/pki/viewer.crt" --key "$WORK/pki/viewer.key" \
  -t 'sites/#' -v -q 1 & sub=$!; pids+=($sub) names+=("the viewer (mosquitto_sub)")
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait "$sub"
fi
