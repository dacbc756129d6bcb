# edgegw — see README.md. Two commands do everything on a fresh Debian machine:
#   make demo    the main job end to end on this machine
#   make test    every test, including the integration tests on a real Mosquitto
#                (installs nothing: `make deps` does, as root; make demo runs it)

SHELL       := /bin/bash
GO          ?= go
VERSION     ?= $(shell git describe --tags --match 'v*' 2>/dev/null | sed 's/^v//' || true)
ifeq ($(VERSION),)
VERSION     := 0.1.0+git$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
endif
LDFLAGS     := -s -w -X main.version=$(VERSION)
GOBUILD     := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
# staticcheck 2025.1.1 by its module version (the proxy refuses the release name).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.6.1
# Debian packages the tests and the demo use.
# util-linux: unshare and mount for the power-cut rounds (FUSE is mounted with mount(2), no fuse3),
# losetup for internal/loopfs; e2fsprogs: mkfs.ext4 for the loop-mounted ext4 of the wear and
# full-disk tests.
# nodejs runs Eclipse Tahu's Sparkplug codec (npm sparkplug-payload) in the
# Sparkplug test; Debian's nodejs comes without npm (NodeSource's bundles it
# and conflicts with Debian's npm package), so npm is added only when missing.
# rabbitmq-server is the second upstream broker of the cloud-limits tests.
# gcc and libc6-dev: go test -race needs cgo; systemd-container and
# debootstrap: the .deb under a real systemd.
DEB_PKGS    := mosquitto mosquitto-clients openssl socat qemu-user-static lintian systemd file util-linux mount nodejs rabbitmq-server \
               gcc libc6-dev systemd-container debootstrap e2fsprogs
# Packages whose tests run again under the race detector in make test.
RACE_PKGS   := ./bridge/... ./broker/... ./gateway/...
TEST_TIMEOUT ?= 20m

.PHONY: all build cross deb test test-short test-race lint deps check-deps demo bench fuzz clean

all: build

build:
	$(GOBUILD) -o bin/edgegw ./cmd/edgegw

cross:
	GOOS=linux GOARCH=arm GOARM=6 $(GOBUILD) -o bin/edgegw-linux-armv6 ./cmd/edgegw
	GOOS=linux GOARCH=arm GOARM=7 $(GOBUILD) -o bin/edgegw-linux-armv7 ./cmd/edgegw
	GOOS=linux GOARCH=arm64 $(GOBUILD) -o bin/edgegw-linux-arm64 ./cmd/edgegw
	GOOS=linux GOARCH=amd64 $(GOBUILD) -o bin/edgegw-linux-amd64 ./cmd/edgegw
	@bash scripts/check-cross.sh

# deb builds dist/edgegw_<version>_{armhf,arm64,amd64}.deb with nfpm (pinned,
# run with go run); armhf carries the ARMv6 build (Pi Zero W).
deb: cross
	@bash scripts/deb.sh $(VERSION)

# deps installs the Debian packages the tests and the demo need (as root), or
# prints the exact command to run. It is the only target that installs.
deps:
	@bash scripts/deps.sh install $(DEB_PKGS)
	@command -v npm >/dev/null || bash scripts/deps.sh install npm

# check-deps installs nothing: it names what is missing and the command.
check-deps:
	@bash scripts/deps.sh check $(DEB_PKGS)
	@command -v npm >/dev/null || bash scripts/deps.sh check npm

# test runs everything: lint, every test (integration tests on a real
# Mosquitto, qemu, systemd-nspawn), then the race detector over the packages
# with goroutines of their own. bench/ is its own module (its load generator
# stays out of the product's go.mod), so ./... at the root does not reach
# it: each target runs it too.
test: check-deps lint
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	cd bench && $(GO) test -count=1 ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(RACE_PKGS)

# test-short runs the unit tier: no Mosquitto, qemu or root needed; tests that
# need them skip with a message saying so.
test-short:
	$(GO) test -count=1 -short -timeout 5m ./...
	cd bench && $(GO) test -count=1 -short ./...

test-race:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(RACE_PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' (go mod tidy -diff shows what changes)"; $(GO) mod tidy -diff; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd bench && { $(GO) mod tidy -diff >/dev/null || { echo "bench/go.mod is not tidy: run (cd bench && go mod tidy)"; exit 1; }; } && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...

demo: deps build
	@bash scripts/demo.sh

bench: deps build
	@bash scripts/bench.sh

# fuzz runs every fuzz target for FUZZTIME each (make test replays the seeds).
FUZZTIME ?= 30s
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin dist
