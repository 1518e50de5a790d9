#!/usr/bin/env bash
# Installs or upgrades the nodemesh agent on a VM: npm package under /usr/local, config in /etc/nodemesh.d, secrets in /etc/nodemesh, systemd unit, `nodemesh` system user.
set -euo pipefail
# Installed code and config must be readable by the nodemesh user whatever the caller's umask; secret
# files get their modes explicitly below.
umask 022

PROG=install-vm.sh
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
# What systemd gives a service when the unit sets no PATH: `#!/usr/bin/env node` is resolved on it.
SYSTEMD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

usage() {
  cat <<EOF
Usage: $PROG [options]

Installs (or upgrades) the nodemesh agent on this VM and runs it as the systemd service "nodemesh".
Run it as root. Re-running it is safe: it reinstalls the package, and rewrites the config from the
options given; settings not given are kept from the existing /etc/nodemesh.d/00-agent.json.

  --package PATH        the package: a .tgz (from --pack-only, or an npm pack that includes dist/) or a
                        built nodemesh directory (default: $REPO)
  --join ADDR           another agent's gossip address, host or host:port (repeatable; written as
                        retry_join: retried with backoff until one answers)
  --encrypt-file FILE   file holding the gossip key (nodemesh keygen > FILE), the same on every agent
  --encrypt KEY         the gossip key itself (visible in the process list while this runs: prefer
                        --encrypt-file)
  --ca-dir DIR          the mesh CA: ca.pem + ca-key.pem (nodemesh ca init --out DIR), or NODE-ca.pem +
                        NODE-ca-key.pem (nodemesh ca issue-intermediate --node NODE --out DIR)
  --node NAME           node name (default: the existing config's, else \$(hostname))
  --bind ADDR           IP address other agents reach this VM at (gossip, sidecar listeners)
  --acl-token-file FILE the API token, written to /etc/nodemesh/nodemesh.env as NODEMESH_ACL_TOKEN
                        (never on a command line); at least 8 of A-Z a-z 0-9 . _ ~ + / = -
  --no-start            install and enable, but do not start or restart the service
  --root DIR            install under DIR instead of / (DIR/etc, DIR/var/lib, DIR/usr/local,
                        DIR/etc/systemd/system), with the paths inside the config and the unit pointing
                        into DIR too, so the tree runs where it is; no user is created, no systemctl
                        is run, files are chowned only when root and a nodemesh user exists. For tests
  --pack-only DIR       only build the installable tarball from the --package directory into DIR
                        (package.json, bin/, dist/, npm-shrinkwrap.json from package-lock.json, this
                        script and the unit), print its path, and exit; needs no root
  --help                this text

Exit status: 0 installed; 2 bad options or input (nothing changed); 1 anything else.
Example:
  sudo $PROG --package nodemesh-0.1.0.tgz --join 10.0.0.5 --join 10.0.0.6 --bind 10.0.0.7 \\
    --encrypt-file gossip.key --ca-dir mesh-ca --acl-token-file acl-token
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: WARNING: %s\n' "$PROG" "$*" >&2; }
# die STATUS MESSAGE: every message says what to do next.
die() { local code="$1"; shift; printf '%s: error: %s\n' "$PROG" "$*" >&2; exit "$code"; }
usage_error() { printf '%s: error: %s\n\n' "$PROG" "$*" >&2; usage >&2; exit 2; }

# ---- options ----------------------------------------------------------------------------------
PACKAGE="" ENCRYPT="" HAVE_ENCRYPT=0 ENCRYPT_FILE="" CA_DIR="" NODE="" HAVE_NODE=0 BIND="" HAVE_BIND=0
TOKEN_FILE="" ROOT="" HAVE_ROOT=0 NO_START=0 PACK_ONLY="" JOINS=()
while [ $# -gt 0 ]; do
  opt="$1" val="" inline=0
  case "$opt" in --*=*) val="${opt#*=}" opt="${opt%%=*}" inline=1 ;; esac
  case "$opt" in
    -h|--help) usage; exit 0 ;;
    --no-start)
      [ "$inline" = 0 ] || usage_error "--no-start takes no value"
      NO_START=1; shift; continue ;;
    --package|--join|--encrypt|--encrypt-file|--ca-dir|--node|--bind|--acl-token-file|--root|--pack-only)
      if [ "$inline" = 0 ]; then
        [ $# -ge 2 ] || usage_error "$opt needs a value"
        val="$2"; shift 2
      else
        shift
      fi ;;
    -*) usage_error "unknown option: $opt" ;;
    *) usage_error "unexpected argument: $opt (every value goes after its option, e.g. --join $opt)" ;;
  esac
  case "$opt" in
    --package) PACKAGE="$val" ;;
    --join) JOINS+=("$val") ;;
    --encrypt) ENCRYPT="$val" HAVE_ENCRYPT=1 ;;
    --encrypt-file) ENCRYPT_FILE="$val" ;;
    --ca-dir) CA_DIR="$val" ;;
    --node) NODE="$val" HAVE_NODE=1 ;;
    --bind) BIND="$val" HAVE_BIND=1 ;;
    --acl-token-file) TOKEN_FILE="$val" ;;
    --root) ROOT="$val" HAVE_ROOT=1 ;;
    --pack-only) PACK_ONLY="$val" ;;
  esac
done

# ---- Node.js ----------------------------------------------------------------------------------
NODE_HELP="install Node.js 20 or newer system-wide, then re-run: Debian 13: apt-get install nodejs npm; Debian 12 or Ubuntu (their nodejs is 18 or older): NodeSource, curl -fsSL https://deb.nodesource.com/setup_20.x | bash - && apt-get install -y nodejs (see docs/vm.md)"
node_major() { local v; v="$("$@" --version 2>/dev/null)" || return 1; v="${v#v}"; printf '%s' "${v%%.*}"; }
command -v node >/dev/null 2>&1 || die 1 "node is not installed: $NODE_HELP"
major="$(node_major node || true)"
[[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -ge 20 ] || die 1 "node $(node --version 2>/dev/null || echo '(unknown version)') at $(command -v node) is too old: nodemesh needs 20 or newer; $NODE_HELP"
command -v npm >/dev/null 2>&1 || die 1 "npm is not installed (Debian's nodejs package does not include it): apt-get install npm, then re-run"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# ---- the package ------------------------------------------------------------------------------
PKG="${PACKAGE:-$REPO}"
PKG_KIND=""
check_package() {
  if [ -d "$PKG" ]; then
    PKG="$(cd "$PKG" && pwd)"
    [ -f "$PKG/package.json" ] || die 2 "--package $PKG: no package.json there: pass a nodemesh clone or unpacked package, or a .tgz"
    local name
    name="$(node -p 'require(process.argv[1]).name' "$PKG/package.json" 2>/dev/null || true)"
    [ "$name" = nodemesh ] || die 2 "--package $PKG: its package.json names \"$name\", not nodemesh: pass the nodemesh package"
    [ -f "$PKG/bin/nodemesh.js" ] || die 2 "--package $PKG: bin/nodemesh.js is missing: pass a complete nodemesh clone"
    [ -f "$PKG/dist/cli/main.js" ] || die 2 "--package $PKG: no compiled dist/ there: build it first (cd $PKG && npm ci && npm run build), then re-run"
    PKG_KIND=dir
  elif [ -f "$PKG" ]; then
    local list name
    list="$(tar -tzf "$PKG" 2>/dev/null)" || die 2 "--package $PKG: not a .tgz: pass the tarball from --pack-only (or npm pack), or a nodemesh directory"
    grep -qx 'package/package.json' <<<"$list" || die 2 "--package $PKG: not an npm package tarball (no package/package.json): make one with $PROG --pack-only DIR"
    name="$(tar -xzOf "$PKG" package/package.json | node -e 'let s="";process.stdin.on("data",(c)=>s+=c).on("end",()=>{try{console.log(JSON.parse(s).name)}catch{console.log("")}})')"
    [ "$name" = nodemesh ] || die 2 "--package $PKG: a package named \"$name\", not nodemesh"
    grep -qx 'package/dist/cli/main.js' <<<"$list" || die 2 "--package $PKG has no compiled dist/ (a plain npm pack of the repository leaves it out: .gitignore lists dist/ and package.json has no \"files\"). On the machine with the built clone run: scripts/$PROG --pack-only OUTDIR, and install that tarball (or pass the built directory as --package)"
    PKG_KIND=tgz
  else
    die 2 "--package $PKG: no such file or directory: pass the nodemesh .tgz or a built nodemesh directory"
  fi
}

# Builds an installable tarball from a built directory: only what runs (no sources, tests, dev tools), with the
# lockfile as npm-shrinkwrap.json so that `npm install -g` gets exactly the tested dependency versions.
pack_dir() { # src outdir → prints the tarball's path
  local src="$1" out="$2" st="$WORK/stage/package" f stale
  rm -rf "$WORK/stage"
  mkdir -p "$st/scripts" "$st/docs"
  cp "$src/package.json" "$st/"
  cp -R "$src/bin" "$src/dist" "$st/"
  for f in README.md LICENSE docs/vm.md; do [ ! -f "$src/$f" ] || cp "$src/$f" "$st/$f"; done
  for f in nodemesh.service install-vm.sh; do
    if [ -f "$src/scripts/$f" ]; then cp "$src/scripts/$f" "$st/scripts/$f"; else cp "$SCRIPT_DIR/$f" "$st/scripts/$f"; fi
  done
  if [ -f "$src/npm-shrinkwrap.json" ]; then cp "$src/npm-shrinkwrap.json" "$st/"
  elif [ -f "$src/package-lock.json" ]; then cp "$src/package-lock.json" "$st/npm-shrinkwrap.json"
  else warn "$src has no package-lock.json: dependency versions are whatever matches package.json's ranges today"
  fi
  if [ -d "$src/agent" ]; then
    stale="$(find "$src/lib" "$src/model" "$src/config" "$src/membership" "$src/catalog" "$src/policy" "$src/identity" "$src/local" "$src/backend" "$src/dataplane" "$src/api" "$src/agent" "$src/cli" -name '*.ts' -newer "$src/dist/cli/main.js" 2>/dev/null | head -3 || true)"
    [ -z "$stale" ] || warn "dist/ is older than some sources (e.g. ${stale%%$'\n'*}): you may be packing an old build; run npm run build in $src"
  fi
  mkdir -p "$out"
  local name
  name="$(cd "$st" && npm pack --ignore-scripts --loglevel=error --pack-destination "$out" | tail -n 1)" \
    || die 1 "npm pack failed in $st: see npm's message above"
  printf '%s/%s\n' "$(cd "$out" && pwd)" "$name"
}

if [ -n "$PACK_ONLY" ]; then
  check_package
  [ "$PKG_KIND" = dir ] || die 2 "--pack-only builds a tarball from a directory, and --package $PKG is a file: pass the built nodemesh directory (or nothing, for $REPO)"
  tgz="$(pack_dir "$PKG" "$PACK_ONLY")"
  say "made $tgz"
  say "copy it to the VM, then: tar -xzf $(basename "$tgz") package/scripts/$PROG && sudo bash package/scripts/$PROG --package $(basename "$tgz") …"
  exit 0
fi

# ---- where things go ---------------------------------------------------------------------------
R=""
if [ "$HAVE_ROOT" = 1 ]; then
  [ -n "$ROOT" ] || usage_error "--root needs a directory"
  [[ "$ROOT" != *[[:space:]\\\"\']* ]] || die 2 "--root $ROOT: no spaces, quotes or backslashes please (the path goes into the unit's ExecStart=)"
  case "$ROOT" in /*) R="$ROOT" ;; *) R="$PWD/$ROOT" ;; esac
  while [ "$R" != "${R%/}" ]; do R="${R%/}"; done
fi
if [ -z "$R" ] && [ "$(id -u)" != 0 ]; then
  die 1 "run me as root (sudo $0 …): I create the nodemesh user and write /etc, /var/lib and /usr/local (or pass --root DIR to install into a directory instead)"
fi
ETC_D="$R/etc/nodemesh.d"
ETC="$R/etc/nodemesh"
STATE="$R/var/lib/nodemesh"
PREFIX="$R/usr/local"
UNIT_DIR="$R/etc/systemd/system"
CONFIG="$ETC_D/00-agent.json"
ENV_FILE="$ETC/nodemesh.env"

# ---- check every input before changing anything -------------------------------------------------
check_package

if [ -n "$ENCRYPT_FILE" ]; then
  [ "$HAVE_ENCRYPT" = 0 ] || usage_error "give --encrypt or --encrypt-file, not both"
  [ -f "$ENCRYPT_FILE" ] && [ -r "$ENCRYPT_FILE" ] || die 2 "--encrypt-file $ENCRYPT_FILE: cannot read it: make one with nodemesh keygen > FILE (the same key on every agent)"
  ENCRYPT="$(<"$ENCRYPT_FILE")"
  ENCRYPT="${ENCRYPT//[[:space:]]/}"
  HAVE_ENCRYPT=1
fi

TOKEN="" HAVE_TOKEN=0
if [ -n "$TOKEN_FILE" ]; then
  [ -f "$TOKEN_FILE" ] && [ -r "$TOKEN_FILE" ] || die 2 "--acl-token-file $TOKEN_FILE: cannot read it: make one with head -c 32 /dev/urandom | base64 > FILE (the same token on every agent)"
  TOKEN="$(<"$TOKEN_FILE")"
  TOKEN="${TOKEN%%[[:space:]]}"
  TOKEN="${TOKEN##[[:space:]]}"
  [[ "$TOKEN" =~ ^[A-Za-z0-9._~+/=-]{8,}$ ]] || die 2 "--acl-token-file $TOKEN_FILE: the token (${#TOKEN} characters) must be one line of at least 8 of A-Z a-z 0-9 . _ ~ + / = -: make one with head -c 32 /dev/urandom | base64 > FILE"
  HAVE_TOKEN=1
fi

for j in ${JOINS[@]+"${JOINS[@]}"}; do
  [[ "$j" =~ ^[^[:space:]:]+(:[0-9]{1,5})?$ ]] || die 2 "--join $j: not host or host:port (IPv6 literals are not supported): e.g. --join 10.0.0.5 or --join 10.0.0.5:8301"
done

CA_CERT="" CA_KEY=""
if [ -n "$CA_DIR" ]; then
  [ -d "$CA_DIR" ] || die 2 "--ca-dir $CA_DIR: no such directory: make the mesh CA once with nodemesh ca init --out DIR, copy DIR here and pass --ca-dir DIR"
  want_node="$NODE"
  [ "$HAVE_NODE" = 1 ] || want_node="$(hostname 2>/dev/null || uname -n)"
  if [ -f "$CA_DIR/ca.pem" ] || [ -f "$CA_DIR/ca-key.pem" ]; then
    [ -f "$CA_DIR/ca.pem" ] || die 2 "--ca-dir $CA_DIR has ca-key.pem but no ca.pem: copy both files nodemesh ca init wrote"
    [ -f "$CA_DIR/ca-key.pem" ] || die 2 "--ca-dir $CA_DIR has ca.pem but no ca-key.pem: the agent signs its services' certificates and needs the key too; copy both files nodemesh ca init wrote"
    CA_CERT="$CA_DIR/ca.pem" CA_KEY="$CA_DIR/ca-key.pem"
  elif [ -f "$CA_DIR/$want_node-ca.pem" ] && [ -f "$CA_DIR/$want_node-ca-key.pem" ]; then
    CA_CERT="$CA_DIR/$want_node-ca.pem" CA_KEY="$CA_DIR/$want_node-ca-key.pem"
  else
    others="$(cd "$CA_DIR" && for f in *-ca-key.pem; do [ -f "$f" ] && [ -f "${f%-key.pem}.pem" ] && printf '%s ' "${f%-ca-key.pem}"; done; true)"
    if [ -n "$others" ]; then
      die 2 "--ca-dir $CA_DIR holds intermediates for node(s) ${others% } but none for this node ($want_node): pass --node with the name it was issued for, or issue one: nodemesh ca issue-intermediate --ca-file ca.pem --ca-key-file ca-key.pem --node $want_node --out $CA_DIR"
    fi
    die 2 "--ca-dir $CA_DIR: found neither ca.pem + ca-key.pem (from nodemesh ca init --out DIR) nor $want_node-ca.pem + $want_node-ca-key.pem (from nodemesh ca issue-intermediate --node $want_node --out DIR): put those files there"
  fi
  [ -r "$CA_CERT" ] && [ -r "$CA_KEY" ] || die 2 "--ca-dir $CA_DIR: cannot read $CA_CERT or $CA_KEY: run me as root, or fix their permissions"
fi

# The config, merged: the existing 00-agent.json (other keys and values not given again are kept), then
# the options. Checked here the way the agent checks it; written to a temp file and moved in place below.
# Values travel in the environment, never on a command line (the gossip key is a secret).
NEW_CONFIG="$WORK/00-agent.json"
NM_JOINS="$(printf '%s\n' ${JOINS[@]+"${JOINS[@]}"})"
summary="$(
  export NM_EXISTING="$CONFIG" NM_OUT="$NEW_CONFIG" NM_DATA_DIR="$STATE" NM_HOSTNAME="$(hostname 2>/dev/null || uname -n)"
  [ "$HAVE_NODE" = 0 ] || export NM_NODE="$NODE"
  [ "$HAVE_BIND" = 0 ] || export NM_BIND="$BIND"
  [ "${#JOINS[@]}" = 0 ] || export NM_JOINS
  [ "$HAVE_ENCRYPT" = 0 ] || export NM_ENCRYPT="$ENCRYPT"
  [ -z "$CA_CERT" ] || export NM_CA_CERT="$CA_CERT" NM_CA_KEY="$CA_KEY" NM_CA_DEST_CERT="$ETC/ca.pem" NM_CA_DEST_KEY="$ETC/ca-key.pem"
  node - <<'JS'
const fs = require('node:fs');
const net = require('node:net');
const crypto = require('node:crypto');
const env = process.env;
const fail = (msg) => { process.stderr.write(`install-vm.sh: error: ${msg}\n`); process.exit(2); };
const validName = (v) => typeof v === 'string' && v !== '' && v.length <= 128 && !/[\s\x00-\x1f/]/.test(v);

let cfg = {};
if (fs.existsSync(env.NM_EXISTING)) {
  try {
    cfg = JSON.parse(fs.readFileSync(env.NM_EXISTING, 'utf8'));
    if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new Error('it must hold one JSON object');
  } catch (e) {
    fail(`the existing ${env.NM_EXISTING} is not a config object (${e.message}): fix it or move it away, then re-run`);
  }
}
const set = (key, alias, value) => { delete cfg[alias]; cfg[key] = value; };

if (env.NM_NODE !== undefined) {
  if (!validName(env.NM_NODE)) fail(`--node ${JSON.stringify(env.NM_NODE)}: a node name is 1-128 characters, no spaces, slashes or control characters`);
  set('node', 'node_name', env.NM_NODE);
} else if (cfg.node === undefined && cfg.node_name === undefined) {
  if (!validName(env.NM_HOSTNAME)) fail(`this machine's hostname ${JSON.stringify(env.NM_HOSTNAME)} is not a valid node name: pass --node NAME`);
  cfg.node = env.NM_HOSTNAME;
}
if (env.NM_BIND !== undefined) {
  if (net.isIP(env.NM_BIND) === 0) fail(`--bind ${JSON.stringify(env.NM_BIND)}: not an IP address: pass the address other agents reach this VM at, e.g. --bind 10.0.0.7`);
  set('bind', 'bind_addr', env.NM_BIND);
}
if (env.NM_JOINS !== undefined) {
  const joins = env.NM_JOINS.split('\n').filter(Boolean);
  for (const j of joins) {
    const port = /:(\d+)$/.exec(j);
    if (port && Number(port[1]) > 65535) fail(`--join ${j}: port ${port[1]} is over 65535 (gossip is 8301 by default)`);
  }
  cfg.retry_join = joins;
}
if (env.NM_ENCRYPT !== undefined) {
  const k = env.NM_ENCRYPT;
  const bytes = Buffer.from(k, 'base64');
  const canonical = /^[A-Za-z0-9+/]+={0,2}$/.test(k) && bytes.toString('base64') === k;
  if (!canonical || ![16, 24, 32].includes(bytes.length)) {
    fail(`the gossip key given with --encrypt${env.NM_ENCRYPT === '' ? ' is empty' : canonical ? ` is ${bytes.length} bytes` : ' is not base64'}: it must be base64 of 16, 24 or 32 bytes: make one with nodemesh keygen (the same key on every agent)`);
  }
  cfg.encrypt = k;
}
if (env.NM_CA_CERT !== undefined) {
  const where = env.NM_CA_CERT;
  const pems = fs.readFileSync(where, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) fail(`${where}: no PEM certificate in it: --ca-dir wants the files nodemesh ca init (or ca issue-intermediate) wrote`);
  let chain;
  try { chain = pems.map((p) => new crypto.X509Certificate(p)); } catch (e) { fail(`${where}: not a valid certificate (${e.message}): make the CA with nodemesh ca init`); }
  if (!chain[0].ca) fail(`${where}: the first certificate is not a CA certificate: --ca-dir wants the CA (nodemesh ca init), not a leaf`);
  if (new Date(chain[0].validTo) < new Date()) fail(`${where}: the CA certificate expired on ${chain[0].validTo}: make a new one and rotate (README, "Root rotation")`);
  const root = chain.find((c) => c.checkIssued(c) && c.verify(c.publicKey));
  if (!root) fail(`${where}: holds an intermediate but not its root: append the root after it (nodemesh ca issue-intermediate writes both)`);
  if (!/URI:spiffe:\/\//.test(root.subjectAltName ?? '')) fail(`${where}: the root names no spiffe:// trust domain: make the mesh CA with nodemesh ca init`);
  let key;
  try { key = crypto.createPrivateKey(fs.readFileSync(env.NM_CA_KEY, 'utf8')); } catch { fail(`${env.NM_CA_KEY}: not a PEM private key: copy the key file nodemesh ca init (or ca issue-intermediate) wrote with the certificate`); }
  if (!crypto.createPublicKey(key).equals(chain[0].publicKey)) fail(`${env.NM_CA_KEY} does not belong to ${where}: copy the certificate and the key that were made together`);
  cfg.ca_file = env.NM_CA_DEST_CERT;
  cfg.ca_key_file = env.NM_CA_DEST_KEY;
}
cfg.data_dir = env.NM_DATA_DIR;
fs.writeFileSync(env.NM_OUT, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
const port = cfg.ports?.http ?? cfg.http_port ?? 8500;
const client = cfg.client ?? cfg.client_addr ?? '127.0.0.1';
console.log(`node=${cfg.node ?? cfg.node_name}`);
console.log(`encrypt=${cfg.encrypt ? 1 : 0}`);
console.log(`ca=${cfg.ca_file ? 1 : 0}`);
console.log(`http=http://${client.includes(':') ? `[${client}]` : client}:${port}`);
JS
)" || exit $?
cfg_value() { sed -n "s/^$1=//p" <<<"$summary"; }
NODE_NAME="$(cfg_value node)"
API="$(cfg_value http)"

# The service runs `node` from systemd's PATH, not the caller's: an nvm or home-directory node is invisible to it.
if [ -z "$R" ]; then
  sys_node="$(env -i PATH="$SYSTEMD_PATH" sh -c 'command -v node' || true)"
  [ -n "$sys_node" ] || die 1 "the service would not find node: systemd looks in $SYSTEMD_PATH and your node is $(command -v node); $NODE_HELP"
  sys_major="$(node_major "$sys_node" || true)"
  [[ "$sys_major" =~ ^[0-9]+$ ]] && [ "$sys_major" -ge 20 ] || die 1 "the service would run $sys_node ($("$sys_node" --version 2>/dev/null || echo unknown)), older than 20, not your $(command -v node): $NODE_HELP"
fi

# ---- user and group ----------------------------------------------------------------------------
CHOWN=0
if [ -z "$R" ]; then
  getent group nodemesh >/dev/null || groupadd --system nodemesh
  getent passwd nodemesh >/dev/null || useradd --system --gid nodemesh --home-dir /var/lib/nodemesh --no-create-home \
    --shell /usr/sbin/nologin --comment "nodemesh agent" nodemesh
  CHOWN=1
else
  say "--root $R: not creating the nodemesh user, not running systemctl"
  if [ "$(id -u)" = 0 ] && getent passwd nodemesh >/dev/null && getent group nodemesh >/dev/null; then
    CHOWN=1
  else
    say "--root: files stay owned by $(id -un) (chown to nodemesh needs root and an existing nodemesh user); modes are set as usual"
  fi
fi
own() { if [ "$CHOWN" = 1 ]; then chown "$@"; fi; }
GROUP_DESC="root:nodemesh"
[ "$CHOWN" = 1 ] || GROUP_DESC="owner $(id -un), not chowned"

# ---- the package -------------------------------------------------------------------------------
if [ "$PKG_KIND" = dir ]; then
  TGZ="$(pack_dir "$PKG" "$WORK/pack")"
else
  TGZ="$(cd "$(dirname "$PKG")" && pwd)/$(basename "$PKG")"
fi
say "installing $(basename "$TGZ") into $PREFIX (npm install -g)…"
mkdir -p "$PREFIX"
# --ignore-scripts: nodemesh's own `prepare` (tsc) is for clones, and no runtime dependency needs an
# install script, so nothing from the registry runs as root here. Exact versions come from the
# package's npm-shrinkwrap.json. Behind a proxy or mirror, npm's own config (npm config set registry …) applies.
npm install --global --prefix "$PREFIX" --ignore-scripts --no-audit --no-fund --loglevel=error "$TGZ" \
  || die 1 "npm install -g failed (see npm's message above): check that this VM reaches the npm registry (npm ping) or set a mirror with npm config set registry URL, then re-run"
BIN="$PREFIX/bin/nodemesh"
PKG_DIR="$PREFIX/lib/node_modules/nodemesh"
version="$("$BIN" version)" || die 1 "the installed $BIN does not run: look at the message above; re-run after fixing it"
say "installed $version at $BIN"

# ---- directories, CA, token, config, unit ------------------------------------------------------
mkdir -p "$R/etc" "$R/var/lib" "$UNIT_DIR"
# Read by the agent, written by root only: the agent cannot change its own config or CA.
install -d -m 0750 "$ETC_D" "$ETC"
chmod 0750 "$ETC_D" "$ETC"
own root:nodemesh "$ETC_D" "$ETC"
install -d -m 0700 "$STATE"
chmod 0700 "$STATE"
own -R nodemesh:nodemesh "$STATE"

# put SRC DEST MODE [OWNER]: a complete file with its final mode and owner, then an atomic rename,
# so a reload or a start never reads half a file or a secret with loose permissions.
put() {
  local tmp
  tmp="$(dirname "$2")/.$(basename "$2").tmp.$$"
  rm -f "$tmp"
  (umask 077 && cp "$1" "$tmp")
  chmod "$3" "$tmp"
  own "${4:-root:nodemesh}" "$tmp"
  mv -f "$tmp" "$2"
}

if [ -n "$CA_CERT" ]; then
  put "$CA_CERT" "$ETC/ca.pem" 0644
  # The CA key signs every identity in the mesh: readable by root and the agent's group only.
  put "$CA_KEY" "$ETC/ca-key.pem" 0640
  say "CA: $ETC/ca.pem, $ETC/ca-key.pem (0640 $GROUP_DESC)"
fi

# NODEMESH_ACL_TOKEN for the unit's EnvironmentFile=; other lines someone added are kept.
if [ "$HAVE_TOKEN" = 1 ] || [ ! -f "$ENV_FILE" ]; then
  {
    if [ -f "$ENV_FILE" ]; then
      grep -v '^NODEMESH_ACL_TOKEN=' "$ENV_FILE" || true
    else
      echo "# Environment of the nodemesh service (EnvironmentFile= in nodemesh.service); written by $PROG."
    fi
    [ "$HAVE_TOKEN" = 0 ] || printf 'NODEMESH_ACL_TOKEN=%s\n' "$TOKEN"
  } >"$WORK/nodemesh.env"
  put "$WORK/nodemesh.env" "$ENV_FILE" 0640
fi
token_set=0
! grep -q '^NODEMESH_ACL_TOKEN=.' "$ENV_FILE" || token_set=1

# 0640 root:nodemesh: it holds the gossip key, and anyone who has the key can join the pool, read the
# gossiped catalog and intentions, and forge gossip. Other local users must not read it.
put "$NEW_CONFIG" "$CONFIG" 0640
say "config: $CONFIG (0640 $GROUP_DESC)"

UNIT_SRC="$PKG_DIR/scripts/nodemesh.service"
[ -f "$UNIT_SRC" ] || UNIT_SRC="$SCRIPT_DIR/nodemesh.service"
[ -f "$UNIT_SRC" ] || die 1 "nodemesh.service is neither in the package nor next to me ($SCRIPT_DIR): copy scripts/nodemesh.service there and re-run"
# Under --root the unit's own paths (settings, not comments) move into the root.
NM_R="$R" node -e '
  const fs = require("node:fs");
  const r = process.env.NM_R;
  let text = fs.readFileSync(process.argv[1], "utf8");
  const moved = (line) => line.startsWith("#") ? line : ["/usr/local/", "/var/lib/nodemesh", "/etc/nodemesh"].reduce((l, p) => l.split(p).join(r + p), line);
  if (r) text = text.split("\n").map(moved).join("\n");
  fs.writeFileSync(process.argv[2], text);
' "$UNIT_SRC" "$WORK/nodemesh.service"
put "$WORK/nodemesh.service" "$UNIT_DIR/nodemesh.service" 0644 root:root
say "unit: $UNIT_DIR/nodemesh.service"

# ---- what is missing (the agent runs without these, but a production mesh should not) ---------
[ "$(cfg_value encrypt)" = 1 ] || warn "no gossip encryption key (--encrypt-file): gossip on 8301 would be plaintext, so the agent will refuse to start. Make one with nodemesh keygen and give every agent the same key (or, on a network you trust, add \"waive\": [\"gossip_key\"] to a file in $ETC_D)."
[ "$(cfg_value ca)" = 1 ] || warn "no mesh CA (--ca-dir): without the pool's CA the agent will refuse to start (a root of its own would be trusted by no other agent). Make one with nodemesh ca init --out DIR and give every agent the same DIR."
[ "$token_set" = 1 ] || warn "no ACL token (--acl-token-file): every local user could write to the API on $API, so the agent will refuse to start. Make one with head -c 32 /dev/urandom | base64 > FILE."

# ---- systemd -----------------------------------------------------------------------------------
if [ -n "$R" ]; then
  say "done (--root $R): run it with $BIN agent --data-dir $STATE --config-dir $ETC_D"
  exit 0
fi
if ! command -v systemctl >/dev/null 2>&1 || [ ! -d /run/systemd/system ]; then
  warn "systemd is not running here (a container or an image build?): the unit is installed but not started"
  systemctl enable nodemesh >/dev/null 2>&1 || true
  say "done: start it where systemd runs with systemctl enable --now nodemesh"
  exit 0
fi
systemctl daemon-reload
systemctl enable nodemesh --quiet
if [ "$NO_START" = 1 ]; then
  say "done: enabled, not started (--no-start): systemctl start nodemesh (or restart, if it was running)"
  exit 0
fi
if systemctl is-active --quiet nodemesh; then
  say "restarting nodemesh: the running agent drains open connections (up to drain_timeout, 20 s) and leaves the pool first…"
  systemctl restart nodemesh
else
  systemctl start nodemesh
fi
for _ in $(seq 1 60); do
  if ! systemctl is-active --quiet nodemesh && [ "$(systemctl show -p ActiveState --value nodemesh)" = failed ]; then
    journalctl -u nodemesh -n 20 --no-pager >&2 || true
    die 1 "nodemesh failed to start (journal above): fix what it says (the config is $CONFIG), then systemctl restart nodemesh"
  fi
  if "$BIN" --http-addr "$API" members >/dev/null 2>&1; then
    say "done: nodemesh $version is running as node $NODE_NAME ($API)"
    say "next: systemctl status nodemesh; journalctl -u nodemesh -f; nodemesh members"
    exit 0
  fi
  sleep 0.5
done
warn "nodemesh started but its API ($API) did not answer within 30 s: look at journalctl -u nodemesh -n 50"
exit 1
