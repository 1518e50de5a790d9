#!/usr/bin/env bash
# Installs the real peer binaries the interop tests run against (Debian's serf) into the git-ignored .tools/ folder.
# Uses the machine's own apt configuration: `apt-get download` + `dpkg -x`, no system-wide install needed.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS/bin"

fetch_deb() { # package [version]
  local pkg="$1" want="${2:-}" work
  work="$(mktemp -d)"
  ( cd "$work" && { apt-get download "${pkg}${want:+=$want}" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get download "${pkg}${want:+=$want}" >/dev/null; }; } )
  dpkg -x "$work"/*.deb "$work/root"
  echo "$work/root"
}

if [ ! -x "$TOOLS/bin/serf" ]; then
  echo "install-interop: fetching Debian's serf package…"
  root="$(fetch_deb serf)"
  install -m 0755 "$root/usr/bin/serf" "$TOOLS/bin/serf"
  rm -rf "$(dirname "$root")"
fi
"$TOOLS/bin/serf" version | head -2
