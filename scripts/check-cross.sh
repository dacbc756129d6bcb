#!/usr/bin/env bash
# Checks what make cross built: each binary is for its architecture and
# statically linked (CGO off), and says its size.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() {
  local f=$1 want=$2
  local info; info=$(file -b "$f")
  if [[ "$info" != *"$want"* ]] || [[ "$info" != *"statically linked"* ]]; then
    echo "FAIL $f: $info"; fail=1
  else
    printf '%-28s %6.1f MiB  %s\n' "$f" "$(awk -v b="$(stat -c %s "$f")" 'BEGIN{print b/1048576}')" "$want, static"
  fi
}
check bin/edgegw-linux-armv6 "ARM, EABI5"
check bin/edgegw-linux-armv7 "ARM, EABI5"
check bin/edgegw-linux-arm64 "ARM aarch64"
check bin/edgegw-linux-amd64 "x86-64"
exit $fail
