#!/bin/sh
# Installs every Debian package halloc's build and tests need (Debian 12, as root).
# Build: compiler, libdw/libelf (symbolizing, linked statically into the commands, with
# the compressors they read: zlib, lzma, bzip2, zstd), libunwind (stack capture),
# libbpf + bpftool + clang (eBPF attach). Tests: Criterion, and the peers and real
# programs the end-to-end tests compare against: valgrind, heaptrack, sqlite3, jq,
# python3; libc6-dbg so C library frames have names and lines.
set -e
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: run as root (apt-get install)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	build-essential make gcc g++ pkg-config ca-certificates \
	libdw-dev libelf-dev libunwind-dev zlib1g-dev libzstd-dev libbz2-dev \
	libbpf-dev bpftool clang \
	libcriterion-dev valgrind heaptrack sqlite3 jq python3 libc6-dbg \
	>/dev/null
echo "install-deps: done"
