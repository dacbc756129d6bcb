# edgegw — see README.md. Two commands do everything on a fresh Debian machine:
#   make demo    the main job end to end on this machine
#   make test    every test, including the integration tests on a real Mosquitto

SHELL       := /bin/bash
GO          ?= go
VERSION     ?= $(shell git describe --tags --match 'v*' 2>/dev/null | sed 's/^v//' || true)
ifeq ($(VERSION),)
VERSION     := 0.1.0+git$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
endif
LDFLAGS     := -s -w -X main.version=$(VERSION)
GOBUILD     := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@2025.1.1
# Debian packages the tests and the demo use.
# util-linux: unshare and mount for the power-cut rounds (FUSE is mounted with mount(2), no fuse3).
# nodejs runs Eclipse Tahu's Sparkplug codec (npm sparkplug-payload) in the
# Sparkplug test; Debian's nodejs comes without npm (NodeSource's bundles it
# and conflicts with Debian's npm package), so npm is added only when missing.
# rabbitmq-server is the second upstream broker of the cloud-limits tests.
DEB_PKGS    := mosquitto mosquitto-clients openssl socat qemu-user-static lintian systemd file util-linux mount nodejs rabbitmq-server
TEST_TIMEOUT ?= 20m

.PHONY: all build cross deb test test-short lint deps demo bench fuzz clean

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

# deps installs the Debian packages the tests need (as root), or prints the
# exact command to run.
deps:
	@bash scripts/deps.sh $(DEB_PKGS)
	@command -v npm >/dev/null || bash scripts/deps.sh npm

# bench/ is its own module (its load generator stays out of the product's
# go.mod), so ./... at the root does not reach it: each target runs it too.
test: deps lint
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	cd bench && $(GO) test -count=1 ./...

test-short:
	$(GO) test -count=1 -short ./...
	cd bench && $(GO) test -count=1 -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd bench && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...

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
