#!/usr/bin/env bash
# Build sigil_<version>_<arch>.deb (issue #19) with dpkg-deb: the production bundle
# (scripts/bundle.mjs: JS chunks, data files, native modules built for this machine, and the
# one-shot agent commands as one CommonJS script with its V8 code cache, written by the same
# `node` that is shipped: V8 takes a cache only from the binary and flags that made it), the Node
# runtime copied from this machine's `node`, the systemd units and example configs of
# packaging/, and maintainer scripts that create the `sigil` system user and the 0700 state
# directories. No network: it packages what `npm ci && npm run build` left in the tree.
#
#   bash scripts/package-deb.sh [--out DIR] [--compress xz|gzip|none] [--no-bundle]
#
# The runtime is a copy of the node binary rather than a single-executable application: the
# SEA route needs postject (an npm dependency this project does not have) and the whole CLI as
# one CommonJS script (the bundle has one for the one-shot agent commands only: as a whole it
# idles 15 MB larger as a daemon), and still ships the native modules beside it; the
# copy is the same bytes, runs the same bundle the tests run, and the size is the same (the
# binary dominates either way). docs/performance.md, "Agent footprint", has the figures.
#
# The native modules are built for the Node ABI and glibc of the build machine: build on the
# Debian release (and architecture) the package is for.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT
COMPRESS=xz
BUNDLE=1
while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    --compress) COMPRESS=$2; shift 2 ;;
    --no-bundle) BUNDLE=0; shift ;;
    *) echo "usage: $0 [--out DIR] [--compress xz|gzip|none] [--no-bundle]" >&2; exit 2 ;;
  esac
done

NODE=$(command -v node)
NODE_VERSION=$("$NODE" --version)
case "${NODE_VERSION#v}" in
  2[0-9].*|[3-9][0-9].*) ;;
  *) echo "error: node $NODE_VERSION is too old to ship (Sigil needs >= 20)" >&2; exit 2 ;;
esac
VERSION=$("$NODE" -p "require('$ROOT/package.json').version")
ARCH=$(dpkg --print-architecture)

# --no-bundle keeps dist-bundle/ as it is: its code cache is then only used if this same node
# wrote it (otherwise V8 rejects it and the one-shot commands compile from source: slower, not wrong).
if [ "$BUNDLE" = 1 ] || [ ! -f "$ROOT/dist-bundle/sigil.mjs" ]; then
  "$NODE" "$ROOT/scripts/bundle.mjs" >&2
fi

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/sigil-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
PKG=$STAGE/root
umask 022

# /usr/lib/sigil: the bundle as a whole (its chunks find data and natives beside them) + node.
install -d "$PKG/usr/lib/sigil" "$PKG/usr/bin" "$PKG/lib/systemd/system" "$PKG/etc/sigil" \
  "$PKG/usr/share/doc/sigil" "$PKG/DEBIAN"
cp -a "$ROOT/dist-bundle/." "$PKG/usr/lib/sigil/"
rm -f "$PKG/usr/lib/sigil/meta.json"
install -m 0755 "$NODE" "$PKG/usr/lib/sigil/node"
strip --strip-unneeded "$PKG/usr/lib/sigil/node" 2>/dev/null || true

cat >"$PKG/usr/bin/sigil" <<'EOF'
#!/bin/sh
# The sigil command (package sigil): its own Node runtime, the production bundle.
# `sigil agent run` without --once is the agent daemon: it runs with the V8 flags of the agent
# units (sigil-agent.service says why). One-shot commands keep V8's defaults: the flags save
# memory but cost them a few ms of CPU, and `agent run --once` / `agent status` run from a V8
# code cache that V8 takes only under the flags it was made with, none (docs/performance.md,
# "Agent footprint").
flags=
if [ "$1" = agent ] && [ "$2" = run ]; then
  flags="--lite-mode --no-expose-wasm --optimize-for-size --bytecode-old-age=1"
  for a in "$@"; do [ "$a" = --once ] && flags=; done
fi
exec /usr/lib/sigil/node $flags /usr/lib/sigil/sigil.mjs "$@"
EOF
chmod 0755 "$PKG/usr/bin/sigil"

install -m 0644 "$ROOT"/packaging/systemd/*.service "$PKG/lib/systemd/system/"
install -m 0644 "$ROOT"/packaging/etc/* "$PKG/etc/sigil/"
install -m 0644 "$ROOT/packaging/debian/README.Debian" "$PKG/usr/share/doc/sigil/"

install -m 0755 "$ROOT"/packaging/debian/{postinst,prerm,postrm} "$PKG/DEBIAN/"
install -m 0644 "$ROOT/packaging/debian/conffiles" "$PKG/DEBIAN/"
SIZE=$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" -e "s/@NODE_VERSION@/$NODE_VERSION/" \
  "$ROOT/packaging/debian/control.in" >"$PKG/DEBIAN/control"

# Everything root-owned in the archive, whoever builds it.
DEB=$OUT/sigil_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$PKG" "$DEB" >&2
echo "$DEB"
