#!/usr/bin/env bash
# The `make run` job: publish the built-in test pattern on the bus "demo" and
# show it live for 20 s: in a window when there is a display ($DISPLAY), else
# as a web preview on http://127.0.0.1:8080/ (FRAMEBUS_DEMO_HTTP picks another
# address, FRAMEBUS_DEMO_DURATION another length). A consumer prints a few
# frames and the bus's status is shown; everything ends by itself after 20 s,
# or on Ctrl-C.
#
# usage: scripts/run-demo.sh BIN      (BIN: the framebus binary, built by make build)
# Needs nothing but bash and the binary. FRAMEBUS_DIR picks the bus directory
# (default /dev/shm).
set -euo pipefail

BIN=${1:?usage: $0 path/to/framebus}
if [[ ! -x $BIN ]]; then
	echo "$0: $BIN is not an executable (build it with: make build)" >&2
	exit 2
fi
DURATION=${FRAMEBUS_DEMO_DURATION:-20s}
HTTP=${FRAMEBUS_DEMO_HTTP:-127.0.0.1:8080}

pids=()
# Whatever happens below (an error, Ctrl-C), nothing we started outlives us.
cleanup() {
	for pid in "${pids[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The capture runs until the preview has ended (then SIGTERM closes the bus
# cleanly): were it to end first, the preview would see the stream closed
# and log that it waits for a new producer, which is what a preview is for,
# but not how a demo should end.
"$BIN" capture --name demo --source pattern --size 640x480 --fps 30 &
capture_pid=$!
pids+=("$capture_pid")

if [[ -n ${DISPLAY:-} ]]; then
	echo "== framebus view demo: a window on $DISPLAY (q closes it, space pauses, s saves a PNG)"
	"$BIN" view demo --duration "$DURATION" --timeout 10s &
else
	echo "== framebus view demo --http $HTTP: no \$DISPLAY, so a web preview (open the URL below)"
	"$BIN" view demo --http "$HTTP" --duration "$DURATION" --timeout 10s &
fi
view_pid=$!
pids+=("$view_pid")

sleep 1
echo
echo "== framebus tail demo --duration 300ms: a consumer printing each frame"
"$BIN" tail demo --duration 300ms --timeout 10s

echo
echo "== framebus stat demo"
"$BIN" stat demo

echo
echo "== previewing for $DURATION (Ctrl-C ends it now)"
view_status=0
wait "$view_pid" || view_status=$?
status=0
if kill -0 "$capture_pid" 2>/dev/null; then
	kill -TERM "$capture_pid" 2>/dev/null || true
	wait "$capture_pid" || status=$?
else
	wait "$capture_pid" || status=$?
	((status != 0)) || status=1 # it should still be running
fi
trap - EXIT
if ((status != 0)); then
	echo "$0: the capture failed (exit $status)" >&2
	exit "$status"
fi
if ((view_status != 0)); then
	echo "$0: the preview failed (exit $view_status); 'framebus view --help' says what it needs" >&2
	exit "$view_status"
fi
