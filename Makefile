# framebus: one Makefile for the two commands a fresh machine needs
# (make run, make test) and the rest of the work.
GO        ?= go
BIN       := bin
FUZZTIME  ?= 60s
BENCHTIME ?= 1s
PKGS      := ./...
# cgo parts behind build tags: OpenCV through gocv (file source, viewers) and
# the pion/mediadevices drivers that need cgo (V4L2 camera, X11 screen), and
# the WebRTC bridge's VP8 codec (libvpx). (record --lossless, the rtsp://
# source, cat and metrics are pure Go; rtsp:// runs ffmpeg, which the tests
# install.)
TAGS      ?= framebus_opencv,framebus_media,framebus_webrtc
# Debian packages they need: pkg-config name, command or file, then the package.
SYSDEPS   := pkgconf:opencv4:libopencv-dev pkgconf:x11:libx11-dev pkgconf:xext:libxext-dev pkgconf:vpx:libvpx-dev \
             cmd:xvfb-run:xvfb cmd:xauth:xauth cmd:pkg-config:pkg-config \
             cmd:chromium:chromium cmd:import:imagemagick cmd:xdotool:xdotool \
             file:/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml:opencv-data
# The tools the interoperability tests talk to (docs/RECORDING.md,
# docs/DEPLOY.md): ffmpeg and
# GStreamer at both ends of a pipe, an RTSP camera (gst-rtsp-server through
# Python), a Prometheus server, the shells of the completion scripts,
# systemd-analyze and a YAML parser for docs/deploy; g++ for the C++ example over libframebus;
# Janus (its VideoRoom) and npm for simple-whip-server in front of it (framebus push over
# WHIP, docs/VIEWER.md).
INTEROPDEPS := cmd:ffmpeg:ffmpeg cmd:ffprobe:ffmpeg cmd:gst-launch-1.0:gstreamer1.0-tools \
             gst:videotestsrc:gstreamer1.0-plugins-base gst:jpegenc:gstreamer1.0-plugins-good \
             gst:rtpjpegpay:gstreamer1.0-plugins-good gst:rawvideoparse:gstreamer1.0-plugins-bad \
             py:gi:python3-gi py:gi.repository.GstRtspServer:gir1.2-gst-rtsp-server-1.0 \
             cmd:prometheus:prometheus py:yaml:python3-yaml cmd:zsh:zsh cmd:systemd-analyze:systemd \
             cmd:g++:g++ cmd:janus:janus cmd:npm:npm
# The commit, for framebus version: the Go toolchain does not stamp builds
# from a git worktree or with GOFLAGS=-buildvcs=false.
VCS_COMMIT := $(shell git rev-parse HEAD 2>/dev/null)
VCS_DIRTY  := $(shell git status --porcelain 2>/dev/null | grep -q . && echo true)
LDFLAGS    := -X main.buildCommit=$(VCS_COMMIT) -X main.buildModified=$(VCS_DIRTY)

.PHONY: all build lib gst gst-deps test-gst test-lib install install-bin install-lib install-gst test test-python test-arm64 test-windows litmus litmus-arm64 bench-quick run bench fuzz check deps sysdeps vet fmt clean model chaos soak

all: build

deps: sysdeps
	@command -v gcc >/dev/null || { echo "gcc is needed (apt-get install -y gcc)"; exit 1; }
	$(GO) mod download

# Installs the missing Debian packages (as root), or prints the command.
sysdeps:
	@missing=""; for d in $(SYSDEPS); do \
	  kind=$${d%%:*}; rest=$${d#*:}; what=$${rest%%:*}; pkg=$${rest#*:}; \
	  case $$kind in \
	    pkgconf) pkg-config --exists $$what 2>/dev/null || missing="$$missing $$pkg";; \
	    cmd) command -v $$what >/dev/null 2>&1 || missing="$$missing $$pkg";; \
	    gst) gst-inspect-1.0 $$what >/dev/null 2>&1 || missing="$$missing $$pkg";; \
	    file) [ -e $$what ] || missing="$$missing $$pkg";; \
	    py) /usr/bin/python3 -c "import $$what" >/dev/null 2>&1 || missing="$$missing $$pkg";; \
	    lib) /sbin/ldconfig -p 2>/dev/null | grep -q "$$what" || missing="$$missing $$pkg";; \
	  esac; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  else echo "missing Debian packages; run: sudo apt-get install -y --no-install-recommends$$missing"; exit 1; fi; \
	fi

# The full command (OpenCV and camera support included), and a check that the
# pure-Go command still builds without cgo; libframebus too where a C compiler is.
build: deps
	@mkdir -p $(BIN)
	$(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/framebus ./cmd/framebus
	@if command -v $(CC) >/dev/null 2>&1; then $(MAKE) -s lib; else echo "no C compiler ($(CC)): libframebus not built"; fi
	@if command -v $(CC) >/dev/null 2>&1 && pkg-config --exists $(GSTPKGS) 2>/dev/null; then $(MAKE) -s gst; \
	else echo "no GStreamer development files ($(GSTPKGS)): the GStreamer plugin (gst/) not built; make gst installs them"; fi

# libframebus, the C library (docs/LIBFRAMEBUS.md): libframebus/build/libframebus.so.1.0.0,
# libframebus.a and framebus.pc. make install puts them, libframebus.h and the wire contract
# framebus.h under PREFIX (default /usr/local; DESTDIR for staging).
PREFIX ?= /usr/local
lib:
	$(MAKE) -C libframebus
install-lib: lib
	$(MAKE) -C libframebus install PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
install-gst:
	@if pkg-config --exists $(GSTPKGS) 2>/dev/null; then $(MAKE) -C gst install PREFIX=$(PREFIX) DESTDIR=$(DESTDIR); \
	else echo "no GStreamer development files: the GStreamer plugin not installed (make gst, then make install)"; fi

# The GStreamer plugin (gst/, docs/GSTREAMER.md): gst/build/libgstframebus.so with framebussink
# and framebussrc, libframebus compiled in; make install puts it in $(PREFIX)/lib/gstreamer-1.0.
# Debian's development packages are installed when missing (as root), like sysdeps.
GSTPKGS      := gstreamer-1.0 gstreamer-base-1.0 gstreamer-video-1.0
GSTBUILDDEPS := pkgconf:gstreamer-1.0:libgstreamer1.0-dev pkgconf:gstreamer-video-1.0:libgstreamer-plugins-base1.0-dev \
                cmd:pkg-config:pkg-config
# What its tests (gst/test) run: gst-launch-1.0, videotestsrc, videoconvert, x264enc (ugly),
# mp4mux (good), rawvideoparse (bad), ffprobe.
GSTTESTDEPS  := cmd:gst-launch-1.0:gstreamer1.0-tools gst:videotestsrc:gstreamer1.0-plugins-base \
                gst:x264enc:gstreamer1.0-plugins-ugly gst:mp4mux:gstreamer1.0-plugins-good \
                gst:rawvideoparse:gstreamer1.0-plugins-bad gst:shmsink:gstreamer1.0-plugins-bad cmd:ffprobe:ffmpeg
gst-deps:
	@$(MAKE) -s sysdeps SYSDEPS="$(GSTBUILDDEPS)"
gst: gst-deps
	$(MAKE) -C gst

# The plugin's tests alone (make test runs them with the rest): real gst-launch-1.0 pipelines
# against framebus tail, the C consumer, framebus capture, ffprobe (gst/test/gst_test.go).
test-gst: gst
	@$(MAKE) -s sysdeps SYSDEPS="$(GSTTESTDEPS)"
	FRAMEBUS_REQUIRE_TOOLS=1 $(GO) test -count=1 -v -timeout 15m ./gst/...

# libframebus's API tests (real processes: a producer killed with SIGKILL, a bus truncated
# under a zero-copy view). The C++ OpenCV example (examples/cpp) is built and run against
# framebus capture by its Go test, examples/cpp/test, in make test's go test.
test-lib:
	@command -v gcc >/dev/null || { echo "gcc is needed (apt-get install -y gcc)"; exit 1; }
	$(MAKE) -C libframebus test

# Installs the command where a shell finds it: $(PREFIX)/bin/framebus
# (PREFIX=/usr/local by default; PREFIX=$$HOME/.local needs no root) and its
# bash and zsh completions, under DESTDIR when set (packaging). install is
# made of one sub-target per part (install-bin here), so that other parts
# (a library) add theirs beside it.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
install: install-bin install-lib install-gst
install-bin: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/bash-completion/completions $(DESTDIR)$(DATADIR)/zsh/site-functions
	install -m 0755 $(BIN)/framebus $(DESTDIR)$(BINDIR)/framebus
	$(BIN)/framebus completion bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/framebus
	$(BIN)/framebus completion zsh > $(DESTDIR)$(DATADIR)/zsh/site-functions/_framebus
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; *) [ -n "$(DESTDIR)" ] || echo "note: $(BINDIR) is not on your PATH: export PATH=\"$(BINDIR):\$$PATH\"";; esac

# The whole test suite: vet, the pure-Go build of the transport, every test
# (multi-process failure tests, the C header check, the fuzz seed corpus,
# ffmpeg, GStreamer, an RTSP camera and Prometheus on loopback), and the
# Python package's tests.
# go test's events go through scripts/testsummary: go test's ok and FAIL
# lines as they come, each failed test's output, then the skipped tests and
# why, PASS or FAIL, and "N passed, N failed, N skipped" last; every test's
# output is kept in $(BIN)/test.json.
test: deps vet test-python test-lib gst
	@$(MAKE) -s sysdeps SYSDEPS="$(INTEROPDEPS) $(GSTTESTDEPS)"
	@# simple-whip-server (a WHIP front end for Janus, push's tests) from its .deb's files and npm, into bin/
	./scripts/setup-whip-server.sh $(BIN)/simple-whip-server
	CGO_ENABLED=0 $(GO) build ./framebus/... ./capture/... ./cmd/...
	@mkdir -p $(BIN)
	FRAMEBUS_REQUIRE_GCC=1 FRAMEBUS_REQUIRE_BROWSER=1 FRAMEBUS_REQUIRE_TOOLS=1 FRAMEBUS_TAGS=$(TAGS) \
	  $(GO) run ./scripts/testsummary -json $(BIN)/test.json -- $(GO) test -json -tags $(TAGS) -count=1 -timeout 30m $(PKGS)

# The Python package (python/, docs/PYTHON.md) against the Go command and the
# C consumer: Debian's numpy, OpenCV-Python and pytest (installed when missing,
# as root, like sysdeps; PyPI is never asked), a venv over them in
# $(PYVENV) made when missing, the package installed offline into it, then
# pytest across real processes (under a minute here, two with a new venv). Before
# them, Debian's mypy checks the package with --strict (numpy ships its stubs).
PYDEPS    := py:numpy:python3-numpy py:cv2:python3-opencv py:pytest:python3-pytest \
             py:ensurepip:python3-venv py:pip:python3-pip lib:libatomic.so.1:libatomic1 cmd:mypy:mypy
PYVENV    := $(BIN)/pyvenv
PYTESTBIN := $(BIN)/framebus-pytest
test-python:
	@$(MAKE) -s sysdeps SYSDEPS="$(PYDEPS)"
	@command -v gcc >/dev/null || { echo "gcc is needed (apt-get install -y gcc)"; exit 1; }
	@mkdir -p $(BIN)
	@[ -x $(PYVENV)/bin/python ] || /usr/bin/python3 -m venv --system-site-packages $(PYVENV)
	cd python && mypy --strict --cache-dir $(CURDIR)/$(BIN)/mypy-cache src/framebus
	$(PYVENV)/bin/python -m pip install -q --no-index --no-build-isolation --disable-pip-version-check ./python
	@$(PYVENV)/bin/python -c "import importlib.resources as r, framebus; assert r.files(framebus).joinpath('py.typed').is_file(), 'py.typed is not installed'"
	@# With OpenCV (make test's deps install it) the command has analyze, which the motion
	@# example is compared with; without it, a pure-Go build (that test is then skipped).
	@if pkg-config --exists opencv4 2>/dev/null; then echo "$(GO) build -tags framebus_opencv -o $(PYTESTBIN) ./cmd/framebus"; \
	  $(GO) build -tags framebus_opencv -o $(PYTESTBIN) ./cmd/framebus; \
	else echo "CGO_ENABLED=0 $(GO) build -o $(PYTESTBIN) ./cmd/framebus"; CGO_ENABLED=0 $(GO) build -o $(PYTESTBIN) ./cmd/framebus; fi
	cd python && FRAMEBUS_BIN=$(CURDIR)/$(PYTESTBIN) ../$(PYVENV)/bin/python -m pytest -q -p no:cacheprovider tests

# The main job on the built-in source: a synthetic test pattern published on
# the bus "demo" for 20 s, shown live by framebus view (a window with $DISPLAY,
# else the web preview on http://127.0.0.1:8080/).
run: build
	./scripts/run-demo.sh $(BIN)/framebus

# The full comparison (docs/BENCHMARKS.md, which says how long it takes;
# framebus bench --plan computes it): framebus
# bench with GStreamer's shmsink/shmsrc rows (installed here when missing),
# then the transport's Go benchmarks. Results in $(BIN)/bench.{json,png,txt}.
GSTDEPS   := cmd:gst-launch-1.0:gstreamer1.0-tools gst:videotestsrc:gstreamer1.0-plugins-base \
             gst:shmsink:gstreamer1.0-plugins-bad
bench: deps
	@$(MAKE) -s sysdeps SYSDEPS="$(GSTDEPS)"
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/framebus-bench ./cmd/framebus
	$(BIN)/framebus-bench bench --json $(BIN)/bench.json --plot $(BIN)/bench.png | tee $(BIN)/bench.txt
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count 5 ./framebus/ | tee $(BIN)/framebus-bench.txt

fuzz: deps
	$(GO) test -run '^$$' -fuzz FuzzValidateSegment -fuzztime $(FUZZTIME) ./framebus/
	$(GO) test -run '^$$' -fuzz FuzzConsumerOpen -fuzztime $(FUZZTIME) ./framebus/
	$(GO) test -run '^$$' -fuzz FuzzScribble -fuzztime $(FUZZTIME) ./framebus/

# The chaos tests in full (docs/RELIABILITY.md): 100 kill -9 of a 1080p
# producer, 80 consumers killed through a 32-entry table, a producer stopped
# 2 s (about a minute). make test runs a shorter version (12 kills).
chaos: deps
	FRAMEBUS_CHAOS=full $(GO) test -count=1 -v -timeout 30m -run '^TestChaos' ./framebus/

# The soak (docs/RELIABILITY.md): 1080p RGBA at 60 fps to 4 consumers, one
# slow, for SOAK (default 10m; e.g. make soak SOAK=2m). Not part of make test.
SOAK ?= 10m
soak: deps
	FRAMEBUS_SOAK=$(SOAK) $(GO) test -count=1 -v -timeout 2h -run '^TestSoak$$' ./framebus/

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags $(TAGS) $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

# Static checks and cross-builds of the pure-Go parts: vet of the transport
# (with its tests), internal/ and the command for linux/arm64, windows/amd64
# and windows/arm64, and the command's CGO_ENABLED=0 binaries. cmd/framebus's
# own tests drive processes with POSIX signals, so on Windows its non-test
# files are vetted (go list ... GoFiles). darwin proves the stubs build. Then
# libframebus's C tests under ASan and UBSan (libframebus/Makefile, check).
CROSS := linux/arm64 windows/amd64 windows/arm64
check: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	@# libframebus's tests under AddressSanitizer and UndefinedBehaviorSanitizer, and its exports
	$(MAKE) -C libframebus check
	@set -e; for t in $(CROSS); do os=$${t%/*}; arch=$${t#*/}; echo "== $$os/$$arch: vet, build"; \
	  export CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch; \
	  $(GO) vet ./framebus/... ./internal/...; \
	  if [ $$os = linux ]; then $(GO) vet ./cmd/framebus; \
	  else $(GO) vet $$($(GO) list -f '{{range .GoFiles}}{{$$.Dir}}/{{.}} {{end}}' ./cmd/framebus); fi; \
	  $(GO) build -o /dev/null ./cmd/framebus; \
	done
	CGO_ENABLED=0 GOOS=darwin  GOARCH=arm64 $(GO) vet ./framebus/...

# The transport's in-process tests for linux/arm64 under qemu-user (the
# process tests are skipped with -short), then a short run of the litmus
# tests. An x86 host cannot expose memory ordering bugs this way (qemu-user
# runs the guest's threads on the host's, with x86's ordering): it proves the
# arm64 build and its fences run. make litmus-arm64 is for the real board.
# QEMU_SKIP: qemu-user (7.2) delivers SIGBUS with a zero fault address, which
# the Go runtime reports as a nil dereference, not as the memory fault that
# framebus's truncation guard turns into an error; real arm64 kernels give
# the address (docs/PORTABILITY.md).
QEMU_SKIP ?= ^(TestTruncatedUnderLiveMappings|TestGuardRecoversOnlyFaults)$$
test-arm64:
	@command -v qemu-aarch64 >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq --no-install-recommends qemu-user >/dev/null; }
	@mkdir -p $(BIN)
	GOARCH=arm64 CGO_ENABLED=0 $(GO) test -c -o $(BIN)/framebus-arm64.test ./framebus/
	cd framebus && qemu-aarch64 ../$(BIN)/framebus-arm64.test -test.short -test.skip '$(QEMU_SKIP)'
	cd framebus && FRAMEBUS_LITMUS=1s qemu-aarch64 ../$(BIN)/framebus-arm64.test -test.run 'Litmus' -test.v

# The seqlock litmus tests (framebus/litmus_test.go) for real weakly ordered
# hardware. litmus runs them on this machine for LITMUS (default 60s each);
# litmus-arm64 cross-builds bin/framebus-arm64.test to copy to an arm64 board,
# and runs it when this machine is one.
LITMUS ?= 60s
litmus:
	FRAMEBUS_LITMUS=$(LITMUS) $(GO) test -count=1 -v -timeout 30m -run 'Litmus' ./framebus/
litmus-arm64:
	@mkdir -p $(BIN)
	GOARCH=arm64 CGO_ENABLED=0 $(GO) test -c -o $(BIN)/framebus-arm64.test ./framebus/
	@if [ "$$(uname -m)" = aarch64 ]; then cd framebus && FRAMEBUS_LITMUS=$(LITMUS) ../$(BIN)/framebus-arm64.test -test.run 'Litmus' -test.v; \
	else echo "copy $(BIN)/framebus-arm64.test to the board and run: FRAMEBUS_LITMUS=$(LITMUS) ./framebus-arm64.test -test.run Litmus -test.v"; fi

# The transport's tests for windows/amd64 under Wine (docs/PORTABILITY.md says
# what runs there and what does not). Installs wine64 and
# binutils-mingw-w64-x86-64 when missing (as root) and builds the one DLL
# Wine 8 lacks (scripts/wine). Not part of make test: Wine is not on a clean
# machine, and the first run makes a Wine prefix (about 20 s).
WINEPREFIX ?= $(CURDIR)/$(BIN)/wineprefix
# Tests that need a real directory: t.TempDir's cleanup fails under Wine 8
# (Go 1.26's RemoveAll uses a file disposition class Wine lacks).
WINE_SKIP  ?= ^(FuzzConsumerOpen)$$
test-windows:
	@mkdir -p $(BIN)
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $(GO) test -c -o $(BIN)/framebus-windows-amd64.test.exe ./framebus/
	@wine=$$(scripts/wine/setup.sh $(WINEPREFIX)) && cd framebus && \
	  WINEPREFIX=$(WINEPREFIX) WINEDEBUG=-all $$wine ../$(BIN)/framebus-windows-amd64.test.exe \
	    -test.count=1 -test.timeout=10m -test.v -test.skip '$(WINE_SKIP)' $(WINETESTFLAGS) > ../$(BIN)/test-windows.log 2>&1; \
	  rc=$$?; grep -vE '^=== (RUN|PAUSE|CONT)' ../$(BIN)/test-windows.log; exit $$rc

# The quick benchmark (~30 s here): 1080p RGBA and 640x480 GREY, framebus
# against a raw futex, memcpy, a Unix socket and a pipe. Pure Go.
bench-quick:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/framebus-bench ./cmd/framebus
	$(BIN)/framebus-bench bench --quick --json $(BIN)/bench-quick.json --plot $(BIN)/bench-quick.png

# The Spin models of the protocol (needs spin; about 45 minutes on 2 shared CPUs).
model:
	@command -v spin >/dev/null || apt-get install -y --no-install-recommends spin
	docs/model/runall.sh

clean:
	rm -rf $(BIN)
	$(MAKE) -C libframebus clean
	$(MAKE) -C gst clean
