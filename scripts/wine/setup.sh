#!/bin/sh
# Prepares Wine to run framebus's Windows test binary (make test-windows):
# Debian's wine64 and binutils-mingw-w64-x86-64 (installed when missing, as
# root), a Wine prefix, and the bcryptprimitives.dll that Wine 8 lacks and Go
# >= 1.22 needs at start-up (processprng.s). Prints the wine64 command.
#
#   usage: scripts/wine/setup.sh WINEPREFIX
set -e
prefix=${1:?usage: setup.sh WINEPREFIX}
here=$(cd "$(dirname "$0")" && pwd)
wine=/usr/lib/wine/wine64
command -v wine64 >/dev/null 2>&1 && wine=$(command -v wine64)
missing=""
[ -x "$wine" ] || missing="$missing wine64"
command -v x86_64-w64-mingw32-as >/dev/null 2>&1 || missing="$missing binutils-mingw-w64-x86-64"
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "missing Debian packages; run: sudo apt-get install -y --no-install-recommends$missing" >&2
		exit 1
	fi
	echo "installing:$missing" >&2
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
	[ -x "$wine" ] || wine=/usr/lib/wine/wine64
fi
export WINEPREFIX="$prefix" WINEDEBUG=-all
sys32="$prefix/drive_c/windows/system32"
if [ ! -d "$sys32" ]; then
	"$wine" wineboot --init >/dev/null 2>&1 || true
fi
if [ ! -f "$sys32/bcryptprimitives.dll" ] || [ "$here/processprng.s" -nt "$sys32/bcryptprimitives.dll" ]; then
	tmp=$(mktemp -d)
	x86_64-w64-mingw32-as -o "$tmp/p.o" "$here/processprng.s"
	x86_64-w64-mingw32-dlltool -d "$here/advapi32.def" -l "$tmp/libadvapi32.a"
	x86_64-w64-mingw32-ld -shared --subsystem windows -e 0 -o "$tmp/bcryptprimitives.dll" \
		"$tmp/p.o" "$here/bcryptprimitives.def" "$tmp/libadvapi32.a"
	cp "$tmp/bcryptprimitives.dll" "$sys32/"
	rm -rf "$tmp"
fi
echo "$wine"
