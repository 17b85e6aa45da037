#!/usr/bin/env bash
# Builds examples/consumer against attn's build tree and against an install
# prefix, and runs it both times.   cmake_consumer.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake -S "$src/examples/consumer" -B "$work/from-build" -Dattn_DIR="$build" >/dev/null
cmake --build "$work/from-build" >/dev/null
"$work/from-build/consumer"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/examples/consumer" -B "$work/from-install" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/from-install" >/dev/null
"$work/from-install/consumer"
echo "consumer built and ran from the build tree and from an install prefix"
