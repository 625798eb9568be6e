#!/bin/sh
# SPDX-License-Identifier: MPL-2.0
# Installs the Debian packages the build, the tests and the demo need; does
# nothing when all are present (so `make check` stays fast on a warm machine).
set -eu
PKGS="build-essential pkg-config libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev
libssl-dev libcurl4-openssl-dev libjansson-dev libevent-dev libcmocka-dev
golang-go golang-github-hashicorp-go-plugin-dev golang-google-grpc-dev golang-google-protobuf-dev
golang-github-golang-protobuf-1-5-dev protobuf-compiler protoc-gen-go protoc-gen-go-grpc
curl nginx-light python3 python3-httpx openssl gdb procps iproute2 clang-format clang-tidy jq strace
systemd systemd-container util-linux python3-yaml"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    echo "deps: installing$missing"
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: need root to install:$missing" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
