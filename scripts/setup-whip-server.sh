#!/bin/sh
# Sets up Debian's simple-whip-server (a WHIP front end for Janus) in DEST
# (default bin/simple-whip-server) when it is not there yet, for the push
# tests (cmd/framebus/push_janus_test.go). The package does not install
# here (its nodejs dependency conflicts with a Node from elsewhere), so its
# files are taken from the .deb (apt-get download, dpkg -x) and its npm
# modules installed beside them. Needs apt (Debian's archive) and npm.
# Prints DEST on success.
set -eu
dest=${1:-bin/simple-whip-server}
if [ -f "$dest/server.js" ] && [ -d "$dest/node_modules/express" ]; then
	echo "$dest"; exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "setup-whip-server: npm is needed" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "setup-whip-server: node is needed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download simple-whip-server >/dev/null 2>&1) || {
	apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 || true
	(cd "$tmp" && apt-get download simple-whip-server >/dev/null)
}
dpkg -x "$tmp"/simple-whip-server_*.deb "$tmp/x"
mkdir -p "$dest.new"
cp "$tmp"/x/usr/share/simple-whip-server/src/server.js "$tmp"/x/usr/share/simple-whip-server/src/whip-janus.js "$dest.new/"
cp "$tmp"/x/etc/simple-whip-server/config.js "$dest.new/"
(cd "$dest.new" && echo '{"name":"simple-whip-server-local","private":true}' > package.json &&
	npm install --silent --no-audit --no-fund express body-parser cors debug colors async websocket >/dev/null)
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "$dest"
