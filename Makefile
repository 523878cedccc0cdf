# framebus: one Makefile for the two commands a fresh machine needs
# (make run, make test) and the rest of the work.
GO        ?= go
BIN       := bin
FUZZTIME  ?= 60s
BENCHTIME ?= 1s
PKGS      := ./...

.PHONY: all build test run bench fuzz check deps vet fmt clean model

all: build

deps:
	@command -v gcc >/dev/null || { echo "gcc is needed (apt-get install -y gcc)"; exit 1; }
	$(GO) mod download

build: deps
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/framebus ./cmd/framebus

# The whole test suite: vet, the pure-Go build of the transport, every test
# (multi-process failure tests, the C header check, the fuzz seed corpus).
test: deps vet
	CGO_ENABLED=0 $(GO) build ./framebus/...
	FRAMEBUS_REQUIRE_GCC=1 $(GO) test -count=1 -timeout 30m $(PKGS)

# The main job on the built-in source: a synthetic test pattern published on
# the bus "demo", read back by a consumer that prints each frame.
run: build
	./scripts/run-demo.sh $(BIN)/framebus

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count 5 ./framebus/ | tee bench/framebus-bench.txt

fuzz: deps
	$(GO) test -run '^$$' -fuzz FuzzValidateSegment -fuzztime $(FUZZTIME) ./framebus/
	$(GO) test -run '^$$' -fuzz FuzzConsumerOpen -fuzztime $(FUZZTIME) ./framebus/

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

# Static checks and cross-builds of the pure-Go parts.
check: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	CGO_ENABLED=0 GOOS=linux   GOARCH=arm64 $(GO) vet ./framebus/...
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) vet ./framebus/...
	CGO_ENABLED=0 GOOS=windows GOARCH=arm64 $(GO) vet ./framebus/...
	CGO_ENABLED=0 GOOS=darwin  GOARCH=arm64 $(GO) vet ./framebus/...

# The Spin models of the protocol (needs spin; about 6 minutes).
model:
	@command -v spin >/dev/null || apt-get install -y --no-install-recommends spin
	../shared/model/runall.sh

clean:
	rm -rf $(BIN)
