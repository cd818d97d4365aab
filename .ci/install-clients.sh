#!/usr/bin/env bash
# Installs the toolkits that tests/e2e/clients (pytest -m clients) generate SOAP clients with:
# Java JAX-WS wsimport, gSOAP wsdl2h/soapcpp2, PHP SoapClient, Mono's wsdl (.NET), and the npm
# package `soap` for the Node client (pinned by tests/e2e/clients/node/package-lock.json).
#
# Idempotent: apt-get runs only when a package is missing, npm only when node_modules is older
# than the lockfile. Quiet on success; on failure it prints the failing step's output.
# Runs as root, or through sudo when it is not.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(jaxws gsoap libgsoap-dev php-cli php-soap mono-devel)
command -v javac >/dev/null 2>&1 || packages+=(default-jdk-headless)
command -v g++ >/dev/null 2>&1 || packages+=(g++)
command -v node >/dev/null 2>&1 || packages+=(nodejs)   # a node from elsewhere (nodesource) is kept
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT

if ((${#missing[@]})); then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    if ! { "${sudo[@]}" apt-get update -qq &&
           DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-clients.sh: apt-get install ${missing[*]} failed" >&2
        exit 1
    fi
fi

node_dir=tests/e2e/clients/node
if [ ! -f "$node_dir/node_modules/soap/package.json" ] ||
   [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
    if ! npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-clients.sh: npm ci in $node_dir failed" >&2
        exit 1
    fi
fi
