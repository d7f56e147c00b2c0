#!/bin/sh
# Installs the Debian packages kdeals needs to build, test, fuzz and run its demo, and only
# those that are missing. Safe to run again: with everything present it does nothing.
set -eu

PACKAGES="build-essential cmake pkg-config clang libclang-rt-14-dev curl python3 \
libcurl4-openssl-dev libuv1-dev liblmdb-dev lmdb-utils libmsgpack-dev libyajl-dev \
libinih-dev libcmocka-dev libmicrohttpd-dev zlib1g-dev libjansson-dev libsystemd-dev \
python3-prometheus-client"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
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
echo "install-deps: done"
