#!/bin/sh
# Installs the Debian packages kdeals needs to build, test, fuzz and run its demo, and only
# those that are missing; then the browser test's npm packages (tests/browser: playwright-core,
# which drives Debian's chromium). Safe to run again: with everything present it does nothing.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)

PACKAGES="build-essential cmake pkg-config clang libclang-rt-14-dev curl python3 \
libcurl4-openssl-dev libuv1-dev liblmdb-dev lmdb-utils libmsgpack-dev libyajl-dev \
libinih-dev libcmocka-dev libmicrohttpd-dev zlib1g-dev libjansson-dev libsystemd-dev \
python3-prometheus-client chromium libpq-dev postgresql libssl-dev"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# Node.js and npm for the browser test: Debian's, unless a node is there already (another
# packaging of Node.js brings its own npm, and Debian's npm would fight it).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    for p in nodejs npm; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing="$missing $p"
        fi
    done
fi

# The browser test's packages, exactly as package-lock.json pins them.
npm_ci() {
    if [ ! -f "$root/tests/browser/node_modules/playwright-core/package.json" ] ||
        [ "$root/tests/browser/package-lock.json" -nt "$root/tests/browser/node_modules" ]; then
        echo "install-deps: npm ci in tests/browser"
        (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
        touch "$root/tests/browser/node_modules"
    fi
}

if [ -z "$missing" ]; then
    npm_ci
    exit 0
fi

echo "install-deps: missing Debian packages:$missing"
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-deps: not root. Run as root, or install them yourself:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
        exit 1
    fi
else
    SUDO=""
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
npm_ci
echo "install-deps: done"
