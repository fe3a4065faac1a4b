#!/usr/bin/env bash
# Build the dashboard served at /ui on the admin listener: install the pinned chart library
# (uPlot, from ui/package-lock.json) and copy it with the page's own files into the Python
# package (src/polyhost/http/admin/ui_assets/), so the server needs no CDN or network at run time.
#
# `npm ci` runs only when ui/node_modules is missing or older than the lock file, so a rebuild
# works offline once the library has been installed. The output is build output (gitignored);
# a wheel built after `make ui` carries it (pyproject's package data).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
ui="$root/ui"
out="$root/src/polyhost/http/admin/ui_assets"
stamp="$ui/node_modules/.package-lock.json"

if [ ! -f "$stamp" ] || [ "$ui/package-lock.json" -nt "$stamp" ]; then
  if ! command -v npm >/dev/null; then
    echo "build-ui: npm is needed once to install the dashboard's chart library (uPlot);" \
      "install Node.js and npm (Debian: apt-get install npm), then run make ui" >&2
    exit 1
  fi
  (cd "$ui" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error)
fi

uplot="$ui/node_modules/uplot"
tmp="$(mktemp -d "$root/src/polyhost/http/admin/.ui_assets.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cp "$ui"/src/index.html "$ui"/src/dashboard.js "$ui"/src/dashboard.css "$tmp"/
cp "$uplot/dist/uPlot.iife.min.js" "$tmp/uplot.min.js"
cp "$uplot/dist/uPlot.min.css" "$tmp/uplot.min.css"
cp "$uplot/LICENSE" "$tmp/uplot.LICENSE.txt"
version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$uplot/package.json" | head -n 1)"
printf 'uPlot %s (MIT, https://github.com/leeoniya/uPlot), from ui/package-lock.json\n' \
  "$version" >"$tmp/BUILD.txt"
chmod 755 "$tmp"
# Replace the whole folder at once: a server reading it never sees half a build.
rm -rf "$out.old"
[ -d "$out" ] && mv "$out" "$out.old"
mv "$tmp" "$out"
rm -rf "$out.old"
trap - EXIT
echo "build-ui: dashboard assets in ${out#"$root"/} (uPlot $version)"
