#!/usr/bin/env bash
# nspawn-root.sh CACHE_DIR: makes (once) a minimal Debian root that boots
# with systemd as PID 1 under systemd-nspawn, for the .deb test under a real
# systemd (test/board), and prints its path. The root is made by debootstrap
# (minbase) from the same Debian mirror and suite apt uses on this machine,
# read from its sources at run time, and kept under CACHE_DIR, keyed by the
# suite, mirror, architecture and package list: a later run reuses it.
set -euo pipefail
cache=${1:?usage: nspawn-root.sh CACHE_DIR}
pkgs="systemd,systemd-sysv,dbus,procps"

# The first Debian "deb" source apt uses: deb822 .sources files first, then
# one-line sources.list entries.
mirror="" suite=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  read -r mirror suite < <(awk '
    /^Types:/ { deb = ($0 ~ /(^|[ \t])deb([ \t]|$)/) }
    /^URIs:/ { uri = $2 }
    /^Suites:/ { s = $2 }
    /^$/ { if (deb && uri != "" && s != "" && uri !~ /security/ && s !~ /-/) { print uri, s; exit } deb = 0; uri = ""; s = "" }
    END { if (deb && uri != "" && s != "" && uri !~ /security/ && s !~ /-/) print uri, s }' "$f" | head -1) || true
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  read -r mirror suite < <(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i, $(i+1); exit } }' /etc/apt/sources.list) || true
fi
if [ -z "$mirror" ] || [ -z "$suite" ]; then
  echo "nspawn-root: no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" >&2
  exit 1
fi
arch=$(dpkg --print-architecture)
key=$(printf '%s\n' v1 "$suite" "$mirror" "$arch" "$pkgs" | sha256sum | cut -c1-16)
root="$cache/root-$suite-$arch-$key"
if [ -f "$root/.edgegw-complete" ]; then
  echo "$root"
  exit 0
fi
rm -rf "$root" "$root.tmp"
mkdir -p "$cache"
echo "nspawn-root: debootstrap --variant=minbase $suite from $mirror ($arch, +$pkgs) into $root" >&2
debootstrap --variant=minbase --include="$pkgs" --arch="$arch" "$suite" "$root.tmp" "$mirror" >&2
# What a minbase root lacks to boot cleanly in a container sharing the
# host's network: a hosts file, and no wait for a network it does not manage.
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$root.tmp/etc/hosts"
ln -sf /dev/null "$root.tmp/etc/systemd/system/systemd-networkd-wait-online.service"
echo edgegw-test >"$root.tmp/etc/hostname"
rm -f "$root.tmp/etc/machine-id"
: >"$root.tmp/etc/machine-id"
rm -rf "$root.tmp/var/cache/apt/archives/"*.deb
touch "$root.tmp/.edgegw-complete"
mv "$root.tmp" "$root"
echo "$root"
