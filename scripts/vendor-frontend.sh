#!/usr/bin/env bash
# Fetch the dashboard's front-end libraries from the npm registry at their pinned versions and
# copy the files the dashboard serves into hyperdash/server/static/vendor/.
#
# Each tarball is checked against the integrity hash pinned below, so a re-run either reproduces
# the committed files byte for byte or stops. To upgrade a library, change its version and hash
# (`npm view NAME@VERSION dist.integrity`), run this script, and commit what it wrote.
#
# Usage: scripts/vendor-frontend.sh        (needs npm, tar and openssl; no node_modules is made)
set -euo pipefail

# name  version  integrity  files to copy (paths inside the package)
PACKAGES=(
  "uplot 1.6.32 sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw== dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE"
  "ansi_up 6.0.6 sha512-yIa1x3Ecf8jWP4UWEunNjqNX6gzE4vg2gGz+xqRGY+TBSucnYp6RRdPV4brmtg6bQ1ljD48mZ5iGSEj7QEpRKA== ansi_up.js ansi_up.d.ts LICENSE"
)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vendor="$root/hyperdash/server/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

versions="$work/VERSIONS"
{
  echo "# Front-end libraries served by the dashboard, fetched by scripts/vendor-frontend.sh."
  echo "# name version integrity"
} >"$versions"

for entry in "${PACKAGES[@]}"; do
  read -r name version integrity files <<<"$entry"
  echo "vendoring $name@$version" >&2
  tarball="$(cd "$work" && npm pack --silent "$name@$version" | tail -n 1)"
  actual="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
  if [[ "$actual" != "$integrity" ]]; then
    echo "error: $name@$version does not match its pinned integrity ($actual)" >&2
    exit 1
  fi
  mkdir -p "$work/$name"
  tar -xzf "$work/$tarball" -C "$work/$name"
  rm -rf "${vendor:?}/$name.new"
  mkdir -p "$vendor/$name.new"
  for file in $files; do
    cp "$work/$name/package/$file" "$vendor/$name.new/$(basename "$file")"
  done
  rm -rf "${vendor:?}/$name"
  mv "$vendor/$name.new" "$vendor/$name"
  echo "$name $version $integrity" >>"$versions"
done

cp "$versions" "$vendor/VERSIONS"
echo "vendored into ${vendor#"$root"/}:" >&2
cat "$vendor/VERSIONS" >&2
