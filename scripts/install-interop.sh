#!/usr/bin/env bash
# Installs the real peer binaries the interop tests and the benchmark run against into the git-ignored .tools/ folder:
#   - Debian's serf (interop tests);
#   - Consul 1.8.7, the benchmark's anchor, from Debian's previous release (bullseye) through a private apt state;
#   - wrk and h2load (load generators) and nginx (the benchmark's backend) from the machine's own Debian release;
#   - iptables (system-wide, as systemd for systemd-analyze): the chaos suite partitions loopback addresses with it;
#   - nftables, iproute2, dig, chromium and haproxy (system-wide): transparent capture, DNS, the UI's browser tests and
#     the benchmark's second anchor (an HAProxy mTLS pair).
# The peers use `apt-get download` + `dpkg -x`: only iptables and systemd are installed system-wide. Shared libraries a binary needs that the
# machine lacks are unpacked into .tools/lib, and .tools/bin/{wrk,nginx} are wrappers that set LD_LIBRARY_PATH.
# Idempotent: whatever is already in .tools is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS/bin" "$TOOLS/libexec" "$TOOLS/lib"

CONSUL_DEB_VERSION='1.8.7+dfsg1-2+b3'
CONSUL_SUITE='bullseye'

fetch_deb() { # package [version]
  local pkg="$1" want="${2:-}" work
  work="$(mktemp -d)"
  ( cd "$work" && { apt-get download "${pkg}${want:+=$want}" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get download "${pkg}${want:+=$want}" >/dev/null; }; } )
  dpkg -x "$work"/*.deb "$work/root"
  echo "$work/root"
}

# The first URIs: of the machine's main Debian archive (not -security), read from its apt sources (deb822 or one-line).
debian_mirror() {
  local f uri=''
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri="$(awk 'BEGIN { RS = ""; FS = "\n" }
      { u = ""; s = ""; off = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { n = split($i, a, /[ \t]+/); if (n >= 2) u = a[2] }
          else if ($i ~ /^Suites:/) s = $i
          else if ($i ~ /^Enabled:[ \t]*no/) off = 1
        }
        if (!off && u ~ /debian/ && u !~ /security/ && s !~ /-security/) { print u; exit }
      }' "$f")"
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($i ~ /debian/ && $i !~ /security/) { print $i; exit } break } }' /etc/apt/sources.list)"
  fi
  [ -n "$uri" ] || { echo "install-interop: no Debian archive found in the machine's apt sources" >&2; return 1; }
  echo "${uri%/}"
}

# apt-get download PKG=VERSION from another Debian suite, with a private apt state (own sources list, lists and cache in a
# temp dir; the machine's apt state is not touched). Prints the unpacked root.
fetch_deb_from_suite() { # suite package version
  local suite="$1" pkg="$2" want="$3" mirror work keyring ok='' opts
  mirror="$(debian_mirror)"
  work="$(mktemp -d)"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/dl"
  for keyring in /usr/share/keyrings/debian-archive-keyring.gpg /usr/share/keyrings/debian-archive-"$suite"-*.gpg; do
    [ -f "$keyring" ] || continue
    echo "deb [signed-by=$keyring] $mirror $suite main" >"$work/sources.list"
    opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
    if apt-get "${opts[@]}" update >"$work/update.log" 2>&1 && compgen -G "$work/lists/*_${suite}_main_binary-*_Packages*" >/dev/null; then
      ok=1
      break
    fi
    rm -rf "$work/lists"/*_"$suite"_* 2>/dev/null || true
  done
  if [ -z "$ok" ]; then
    echo "install-interop: apt-get update of Debian $suite failed (keyrings tried under /usr/share/keyrings):" >&2
    cat "$work/update.log" >&2
    return 1
  fi
  ( cd "$work/dl" && apt-get "${opts[@]}" download "${pkg}=${want}" >"$work/download.log" 2>&1 ) \
    || { cat "$work/download.log" >&2; return 1; }
  dpkg -x "$work"/dl/*.deb "$work/root"
  echo "$work/root"
}

# Library packages that PKG depends on and that the machine does not have installed (first alternative of each group).
missing_lib_deps() { # package
  apt-cache show --no-all-versions "$1" | awk '/^(Pre-)?Depends:/ { sub(/^[^:]*:[ \t]*/, ""); print }' | tr ',' '\n' |
    while read -r group; do
      names="$(echo "$group" | sed -e 's/([^)]*)//g' -e 's/:any//g' | tr '|' ' ')"
      have=''
      for n in $names; do
        if dpkg-query -W -f='${Status}' "$n" 2>/dev/null | grep -q 'ok installed'; then have=1; fi
      done
      first="${names%% *}"
      first="${first// /}"
      if [ -z "$have" ]; then case "$first" in lib* | zlib*) echo "$first" ;; esac; fi
    done
}

# Copy a package's binary into .tools/libexec, its missing shared libraries into .tools/lib, and write a wrapper.
install_wrapped() { # package path-in-package name
  local pkg="$1" inpkg="$2" name="$3" root dep droot
  root="$(fetch_deb "$pkg")"
  install -m 0755 "$root/$inpkg" "$TOOLS/libexec/$name"
  rm -rf "$(dirname "$root")"
  for dep in $(missing_lib_deps "$pkg"); do
    echo "install-interop: $name needs $dep, which the machine lacks: unpacking it into .tools/lib"
    droot="$(fetch_deb "$dep")"
    find "$droot" \( -type f -o -type l \) -name '*.so*' -path '*/lib/*' -exec cp -a {} "$TOOLS/lib/" \;
    rm -rf "$(dirname "$droot")"
  done
  cat >"$TOOLS/bin/$name" <<'EOF'
#!/bin/sh
# Generated by scripts/install-interop.sh: runs the unpacked Debian binary with the libraries unpacked beside it.
here="$(cd "$(dirname "$0")/.." && pwd)"
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/libexec/NAME" "$@"
EOF
  sed -i "s/NAME/$name/" "$TOOLS/bin/$name"
  chmod 0755 "$TOOLS/bin/$name"
  if LD_LIBRARY_PATH="$TOOLS/lib" ldd "$TOOLS/libexec/$name" | grep 'not found' >&2; then
    echo "install-interop: $name still misses the libraries above" >&2
    return 1
  fi
}

if [ ! -x "$TOOLS/bin/serf" ]; then
  echo "install-interop: fetching Debian's serf package…"
  root="$(fetch_deb serf)"
  install -m 0755 "$root/usr/bin/serf" "$TOOLS/bin/serf"
  rm -rf "$(dirname "$root")"
fi

consul_ok=''
if [ -x "$TOOLS/bin/consul" ]; then
  case "$("$TOOLS/bin/consul" version 2>/dev/null)" in 'Consul v1.8.7'*) consul_ok=1 ;; esac
fi
if [ -z "$consul_ok" ]; then
  echo "install-interop: fetching consul $CONSUL_DEB_VERSION from Debian $CONSUL_SUITE…"
  root="$(fetch_deb_from_suite "$CONSUL_SUITE" consul "$CONSUL_DEB_VERSION")"
  install -m 0755 "$root/usr/bin/consul" "$TOOLS/bin/consul"
  rm -rf "$(dirname "$root")"
fi

if [ ! -x "$TOOLS/libexec/wrk" ] || [ ! -x "$TOOLS/bin/wrk" ]; then
  echo "install-interop: fetching Debian's wrk package…"
  install_wrapped wrk usr/bin/wrk wrk
fi

# In bookworm `nginx-light` is only a transitional package: the binary is in `nginx` (nginx-common holds /etc files
# the benchmark does not use; it writes its own config).
if [ ! -x "$TOOLS/libexec/nginx" ] || [ ! -x "$TOOLS/bin/nginx" ]; then
  echo "install-interop: fetching Debian's nginx package…"
  install_wrapped nginx usr/sbin/nginx nginx
fi

# h2load (HTTP/2 load generator) for the benchmark's HTTP/2 rows.
if [ ! -x "$TOOLS/libexec/h2load" ] || [ ! -x "$TOOLS/bin/h2load" ]; then
  echo "install-interop: fetching Debian's nghttp2-client package (h2load)…"
  install_wrapped nghttp2-client usr/bin/h2load h2load
fi

# The systemd unit's test runs `systemd-analyze verify`; Debian's systemd package carries it.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "install-interop: installing Debian's systemd package for systemd-analyze…"
  apt-get install -y --no-install-recommends systemd >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends systemd >/dev/null; }
fi

# The chaos suite's partition scenario cuts loopback addresses apart with iptables (a chain of its own, 127.x only).
if ! command -v iptables >/dev/null 2>&1; then
  echo "install-interop: installing Debian's iptables package for the chaos suite's partitions…"
  apt-get install -y --no-install-recommends iptables >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends iptables >/dev/null; }
fi

# Transparent capture installs nftables rules; its end-to-end test runs the agents in network namespaces (iproute2).
if ! command -v nft >/dev/null 2>&1; then
  echo "install-interop: installing Debian's nftables package for transparent capture…"
  apt-get install -y --no-install-recommends nftables iproute2 >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends nftables iproute2 >/dev/null; }
fi

# The DNS tests ask the agent with dig, as a Consul user would.
if ! command -v dig >/dev/null 2>&1; then
  echo "install-interop: installing Debian's bind9-dnsutils package (dig) for the DNS tests…"
  apt-get install -y --no-install-recommends bind9-dnsutils >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends bind9-dnsutils >/dev/null; }
fi

# The benchmark's second anchor: two HAProxy processes as a hand-built mTLS pair (bench/haproxy-anchor.ts).
if ! [ -x /usr/sbin/haproxy ]; then
  echo "install-interop: installing Debian's haproxy package for the benchmark's second anchor…"
  apt-get install -y --no-install-recommends haproxy >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends haproxy >/dev/null; }
fi

# The web UI is tested in a real browser: Debian's Chromium, driven headless.
if ! command -v chromium >/dev/null 2>&1; then
  echo "install-interop: installing Debian's chromium package for the UI's browser tests…"
  apt-get install -y --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium fonts-dejavu-core >/dev/null; }
fi

"$TOOLS/bin/serf" version | head -2
"$TOOLS/bin/consul" version | sed -n 1p
{ "$TOOLS/bin/wrk" -v 2>&1 || true; } | sed -n 1p
"$TOOLS/bin/nginx" -v 2>&1
"$TOOLS/bin/h2load" --version 2>&1 | sed -n 1p
iptables --version
dig -v 2>&1 | sed -n 1p
chromium --version 2>/dev/null | sed -n 1p
/usr/sbin/haproxy -v 2>/dev/null | sed -n 1p
nft --version
