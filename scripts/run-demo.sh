#!/usr/bin/env bash
# The `make run` job: publish the built-in test pattern on the bus "demo" for
# 20 s, read it back with a consumer that prints each frame for 5 s, then show
# the bus's status, and wait for the capture to close the bus.
#
# usage: scripts/run-demo.sh BIN      (BIN: the framebus binary)
# Needs nothing but bash and the binary. FRAMEBUS_DIR picks the bus directory
# (default /dev/shm).
set -euo pipefail

BIN=${1:?usage: $0 path/to/framebus}
if [[ ! -x $BIN ]]; then
	echo "$0: $BIN is not an executable (build it with: make build)" >&2
	exit 2
fi

"$BIN" capture --name demo --source pattern --size 640x480 --fps 30 --duration 20s &
capture_pid=$!
# Whatever happens below (an error, Ctrl-C), the capture does not outlive us.
cleanup() {
	if kill -0 "$capture_pid" 2>/dev/null; then
		kill -TERM "$capture_pid" 2>/dev/null || true
		wait "$capture_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== framebus tail demo --duration 5s (frames flowing from the capture, pid $capture_pid)"
"$BIN" tail demo --duration 5s

echo
echo "== framebus stat demo"
"$BIN" stat demo

echo
echo "== waiting for the capture to end (--duration 20s)"
status=0
wait "$capture_pid" || status=$?
trap - EXIT
if ((status != 0)); then
	echo "$0: the capture failed (exit $status)" >&2
fi
exit "$status"
