#!/usr/bin/env bash
# Builds attn and runs every test: unit tests, finite-difference gradient
# checks, PyTorch parity, the applications, reliability and the command line,
# the find_package consumer; then the suite again under AddressSanitizer +
# UndefinedBehaviorSanitizer, the kernel tests under ThreadSanitizer, and the
# fuzzers for a minute each.
# Exits non-zero on any failure. Installs missing apt packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${ATTN_JOBS:-2}

bash scripts/setup.sh --test

echo "== build (Release) into build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DATTN_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

echo "== tests: unit, gradient checks, PyTorch parity, package"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== portable build (-DATTN_NATIVE=OFF) into build-portable/: the kernel tests at every SIMD target this CPU runs"
# What runs on another x86-64 machine: the library built without -march=native
# (elementwise kernels at the baseline, without FMA; the attention kernels
# chosen at run time), each kernel test under ATTN_SIMD = avx512, avx2, sse4.
cmake -S . -B build-portable -DCMAKE_BUILD_TYPE=Release -DATTN_NATIVE=OFF -DATTN_WERROR=ON \
  -DATTN_BUILD_BENCHMARKS=OFF -DATTN_BUILD_TOOLS=OFF -DATTN_BUILD_EXAMPLES=OFF -DATTN_BUILD_PYTHON=OFF >/dev/null
portable_tests=(test_numerics test_attention test_flex test_ops test_threads)
cmake --build build-portable -j"$jobs" --target "${portable_tests[@]}"
for simd in avx512 avx2 sse4; do
  for t in "${portable_tests[@]}"; do
    echo "-- ATTN_SIMD=$simd $t"
    ATTN_SIMD=$simd build-portable/bin/$t --gtest_brief=1
  done
done

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build of everything into build-asan/"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=address,undefined \
  -DATTN_BUILD_BENCHMARKS=OFF -DATTN_BUILD_TOOLS=ON -DATTN_BUILD_EXAMPLES=OFF -DATTN_BUILD_PYTHON=OFF >/dev/null
cmake --build build-asan -j"$jobs"
# The whole suite but two: the find_package consumer (its own project is not
# instrumented) and test_apps, whose minutes of training to quality thresholds
# take 8 minutes here; apps_smoke runs every application, variant, beam search
# and viz through the tool instead.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  LSAN_OPTIONS=suppressions="$PWD/../tests/lsan.supp" UBSAN_OPTIONS=print_stacktrace=1 \
  ctest -LE 'package|apps' --output-on-failure -j"$jobs")

echo "== ThreadSanitizer build of the kernel tests into build-tsan/ (clang, LLVM's OpenMP)"
bash scripts/tsan.sh

echo "== fuzzing: the safetensors parser, Module::load and the PyTorch checkpoint reader, ${ATTN_FUZZ_SECONDS:-60} s each"
bash scripts/fuzz.sh "${ATTN_FUZZ_SECONDS:-60}"
echo "== all tests passed"
