#!/bin/sh
# bench-gst.sh: framebussink -> framebussrc against shmsink -> shmsrc and against pipes, in one
# run (docs/BENCHMARKS.md, "GStreamer elements"). 1920x1080 RGBA, as fast as the producer goes
# and paced at 60 fps. Every path runs two processes: a producer pipeline whose element "stamp"
# writes CLOCK_MONOTONIC into each frame just before the transport's sink, a consumer pipeline
# whose element "meas" reads it after the transport's source: publish-to-pipeline latency.
# fps is the consumer's (frames it got over the time between its first and last).
#
#   scripts/bench-gst.sh [ROUNDS]        (make gst and make -C gst bench first; about 2 minutes)
#
# Modes: max (videotestsrc as fast as it draws), nofill (fakesrc's unfilled buffers: the
# transports alone), 60fps (videotestsrc live at 60 fps).
# The paths:
#   framebus  videotestsrc ! framebussink (the slot pool: videotestsrc draws into the back slot)
#             | framebussrc (the held slot wrapped) ! fakesink                 copies: 0
#   shm       videotestsrc ! shmsink (its allocator: videotestsrc draws into the shm area)
#             | shmsrc (the area wrapped) ! fakesink                           copies: 0
#   pipe      videotestsrc ! fdsink | fdsrc ! rawvideoparse ! fakesink
#             (write into the pipe, read out of it, rawvideoparse joins 64 KiB reads)  copies: 3
#   cat       videotestsrc ! framebussink, framebus cat --raw | fdsrc ! rawvideoparse ! fakesink
#             (the pipe path of framebus's own command)                      copies: 4
set -eu
ROUNDS=${1:-2}
HERE=$(cd "$(dirname "$0")/.." && pwd)
B=$HERE/gst/build/gstbench
FB=${FRAMEBUS:-$HERE/bin/framebus}
[ -x "$B" ] || { echo "build first: make gst && make -C gst bench" >&2; exit 1; }
[ -x "$FB" ] || { mkdir -p "$HERE/bin" && (cd "$HERE" && go build -o "$FB" ./cmd/framebus); }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export GST_PLUGIN_PATH=$HERE/gst/build GST_REGISTRY=$T/registry.bin FRAMEBUS_DIR=$T
gst-inspect-1.0 framebussink >/dev/null
CAPS=video/x-raw,format=RGBA,width=1920,height=1080
SINKEND="identity name=meas ! fakesink sync=false enable-last-sample=false"
RAW="rawvideoparse width=1920 height=1080 format=rgba framerate=0/1"

run() { # path mode N
	path=$1 mode=$2 n=$3
	case $mode in
	60fps) src="videotestsrc is-live=true num-buffers=$n pattern=black ! $CAPS,framerate=60/1" ;;
	max) src="videotestsrc num-buffers=$n pattern=black ! $CAPS,framerate=0/1" ;;
	# The transport's own ceiling: fakesrc hands out buffers it never fills (its own memory:
	# framebussink copies them once, shmsink too).
	nofill) src="fakesrc num-buffers=$n sizetype=fixed sizemax=8294400 filltype=nothing ! $CAPS,framerate=0/1" ;;
	esac
	want=$((n - 30))
	case $path in
	framebus)
		$B consume $want "framebussrc bus=b timeout=20000 ! $SINKEND" >"$T/out" 2>"$T/err" & c=$!
		sleep 0.5
		$B produce "$src ! identity name=stamp ! framebussink bus=b sync=false" 2>>"$T/err"
		wait $c || true ;;
	shm)
		rm -f "$T/shm.sock"
		$B produce "$src ! identity name=stamp ! shmsink socket-path=$T/shm.sock shm-size=67108864 wait-for-connection=true sync=false" 2>>"$T/err" & p=$!
		while [ ! -S "$T/shm.sock" ]; do sleep 0.05; done
		$B consume $want "shmsrc socket-path=$T/shm.sock is-live=true ! $CAPS,framerate=0/1 ! $SINKEND" >"$T/out" 2>"$T/err" || true
		kill $p 2>/dev/null || true; wait $p 2>/dev/null || true ;;
	pipe)
		$B produce "$src ! identity name=stamp ! fdsink fd=1 sync=false" 2>>"$T/err" |
			$B consume $want "fdsrc fd=0 blocksize=65536 ! $RAW ! $SINKEND" >"$T/out" 2>>"$T/err" || true ;;
	cat)
		"$FB" cat c --raw --timeout 20s 2>>"$T/err" |
			$B consume $want "fdsrc fd=0 blocksize=65536 ! $RAW ! $SINKEND" >"$T/out" 2>>"$T/err" & c=$!
		sleep 0.5
		$B produce "$src ! identity name=stamp ! framebussink bus=c sync=false" 2>>"$T/err"
		wait $c || true ;;
	esac
	printf '%-9s %-6s round %s  %s\n' "$path" "$mode" "$r" "$(cat "$T/out")"
	grep -h -- '-stats' "$T/err" | sed 's/^/    /' | cut -c1-200 || true
}

uname -srm; grep -m1 'model name' /proc/cpuinfo; nproc; gst-launch-1.0 --version | head -1; uptime
for r in $(seq 1 "$ROUNDS"); do
	for path in framebus shm pipe cat; do run $path max 400; done
	for path in framebus shm; do run $path nofill 400; done
	for path in framebus shm pipe cat; do run $path 60fps 300; done
done
