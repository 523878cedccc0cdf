#!/bin/sh
# Measures framebus push's fan-out through Janus against view --http's own
# WHEP, in one run (cmd/framebus's TestMeasurePushFanout; docs/VIEWER.md,
# "push through an SFU"): subscribers served at 720p30, the CPU of the
# framebus processes and of Janus, capture to decoded p50/p99. Needs janus
# (Debian) and node; simple-whip-server is set up in bin/ when missing.
#   scripts/measure-push.sh [COUNTS]     COUNTS: viewers per step, default 1,8,16,32,48
set -eu
cd "$(dirname "$0")/.."
TAGS=${TAGS:-framebus_opencv,framebus_media,framebus_webrtc}
FRAMEBUS_MEASURE=1 FRAMEBUS_MEASURE_VIEWERS=${1:-1,8,16,32,48} FRAMEBUS_TAGS=$TAGS \
  nice -n 5 go test -tags "$TAGS" -run TestMeasurePushFanout -count=1 -v -timeout 20m ./cmd/framebus/ 2>&1 | grep -E 'MEASURE|FAIL|^ok|Error|error'
