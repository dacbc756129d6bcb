#!/usr/bin/env bash
# deps.sh install|check PKG...
#   install  installs the Debian packages that are missing (as root, with
#            apt-get); not root: prints the exact command and fails.
#   check    installs nothing: names what is missing and the command that
#            installs it, and fails; silent when everything is there.
# Neither starts, stops nor reconfigures a service the machine already runs
# (the tests start their own brokers on free ports).
set -euo pipefail
mode=${1:?usage: deps.sh install|check PKG...}
shift
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
case "$mode" in
install)
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The tests start their own brokers; the packaged services are not wanted
    # running (make deps only: make test never touches a service).
    for svc in mosquitto rabbitmq-server; do
      if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
      fi
    done
    exit 0
  fi
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "install them with:" >&2
  echo "  sudo make deps" >&2
  echo "or:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
  ;;
check)
  echo "make test needs Debian packages that are not installed: ${missing[*]}" >&2
  echo "install them with:" >&2
  if [ "$(id -u)" -eq 0 ]; then
    echo "  make deps" >&2
  else
    echo "  sudo make deps" >&2
  fi
  echo "or:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  echo "(make test-short runs the unit tests without them)" >&2
  exit 1
  ;;
*)
  echo "deps.sh: unknown mode $mode (install|check)" >&2
  exit 2
  ;;
esac
