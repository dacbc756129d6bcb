#!/usr/bin/env bash
# Builds dist/edgegw_<version>_{armhf,arm64,amd64}.deb with nfpm from the
# binaries `make cross` made. nfpm runs with `go run` at a pinned version, so
# it is not a dependency of edgegw itself.
#   usage: scripts/deb.sh VERSION [ARCH...]   (default: armhf arm64 amd64)
#   BINDIR (default bin) holds edgegw-linux-{armv6,arm64,amd64}; DIST
#   (default dist) receives the packages.
# armhf carries the ARMv6 build, so the package runs on a Pi Zero W / Pi 1.
set -euo pipefail
cd "$(dirname "$0")/.."
NFPM=${NFPM:-github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.41.1}
BINDIR=${BINDIR:-bin}
DIST=${DIST:-dist}
raw=${1:?usage: scripts/deb.sh VERSION [ARCH...]}
shift
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(armhf arm64 amd64)

# Debian-valid version: strip a leading v; git describe's -N-gSHA becomes
# +N.gSHA (sorts after the tag); any other '-' (1.0.0-rc1) becomes '~' (sorts
# before the release).
debver() {
  local v=${1#v}
  if [[ $v =~ ^(.*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
    v="${BASH_REMATCH[1]}+${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
  fi
  v=${v//-/\~}
  [[ $v =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || { echo "deb.sh: $1 does not make a Debian version ($v)" >&2; exit 2; }
  echo "$v"
}
VERSION=$(debver "$raw")

docdir=$(mktemp -d)
trap 'rm -rf "$docdir"' EXIT
cp deploy/debian/copyright "$docdir/copyright"
# A native package's changelog: one entry for this build.
{
  echo "edgegw ($VERSION) unstable; urgency=medium"
  echo
  echo "  * Build of edgegw $raw."
  echo
  echo " -- edgegw maintainers <maintainers@edgegw.invalid>  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n >"$docdir/changelog.gz"

gzip -9n <deploy/debian/edgegw.1 >"$docdir/edgegw.1.gz"

mkdir -p "$DIST"
for arch in "${archs[@]}"; do
  case $arch in
  armhf) bin=armv6 ;;
  arm64) bin=arm64 ;;
  amd64) bin=amd64 ;;
  *) echo "deb.sh: unknown arch $arch (armhf, arm64, amd64)" >&2; exit 2 ;;
  esac
  [ -x "$BINDIR/edgegw-linux-$bin" ] || { echo "deb.sh: $BINDIR/edgegw-linux-$bin is missing: run make cross" >&2; exit 1; }
  out="$DIST/edgegw_${VERSION}_${arch}.deb"
  rm -f "$out"
  ARCH=$arch BIN=$BINDIR/edgegw-linux-$bin VERSION=$VERSION DOCDIR=$docdir \
    go run "$NFPM" package --config deploy/nfpm.yaml --packager deb --target "$out" >/dev/null
  echo "$out"
done
