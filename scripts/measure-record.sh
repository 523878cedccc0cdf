#!/bin/bash
# The figures of docs/RECORDING.md: one consumer of a pattern bus, its CPU
# time (from /proc) and peak RSS, and what it says at the end.
#
#   scripts/measure-record.sh BIN SIZE FPS SECONDS lossless|mjpeg|cat
#   scripts/measure-record.sh bin/framebus 1920x1080 30 10 lossless
set -eu
B=$1 SIZE=$2 FPS=$3 SECS=$4 MODE=$5
D=$(mktemp -d /dev/shm/fbm.XXXX) O=$(mktemp -d /dev/shm/fbo.XXXX)
trap 'rm -rf "$D" "$O"' EXIT
"$B" capture --name m --size "$SIZE" --fps "$FPS" --duration $((SECS + 2))s --dir "$D" 2>/dev/null &
CP=$!
sleep 0.5
case $MODE in
  lossless) "$B" record m --out "$O/r.mkv" --lossless --duration "${SECS}s" --dir "$D" >"$O/out" 2>/dev/null & ;;
  mjpeg) "$B" record m --out "$O/r.avi" --duration "${SECS}s" --dir "$D" >"$O/out" 2>/dev/null & ;;
  cat) "$B" cat m --raw --duration "${SECS}s" --dir "$D" 2>"$O/out" >/dev/null & ;;
  *) echo "mode: lossless, mjpeg or cat" >&2; exit 2 ;;
esac
RP=$!
sleep $((SECS - 1))
read -r -a st </proc/$RP/stat
ticks=$((${st[13]} + ${st[14]}))
rss=$(awk '/VmHWM/{print $2}' /proc/$RP/status)
wait $RP
echo "$MODE $SIZE@$FPS ${SECS}s: cpu $(awk -v t=$ticks -v s=$((SECS - 1)) -v hz=$(getconf CLK_TCK) 'BEGIN{printf "%.2f", t/hz/s}') CPU-s/s, peak RSS $((rss / 1024)) MB :: $(tail -1 "$O/out" | sed 's/.*INF //')"
wait $CP
