#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ and
# runs each for a bounded time from the seed corpus in fuzz/corpus/ (new
# inputs go to build-fuzz/corpus/, the repository's corpus is only read).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
# A crash, a leak, an input over the heap bound, an error message that does
# not name the problem: the run stops, the input is saved in build-fuzz/ and
# the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
jobs=${ATTN_JOBS:-2}
root=$PWD

cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_FUZZ=ON \
  -DATTN_BUILD_TESTS=OFF -DATTN_BUILD_TOOLS=OFF -DATTN_BUILD_BENCHMARKS=OFF -DATTN_BUILD_EXAMPLES=OFF -DATTN_BUILD_PYTHON=OFF -DATTN_WITH_MPI=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz_safetensors fuzz_load_state_dict fuzz_torch

cd build-fuzz
for target in safetensors load_state_dict torch; do
  mkdir -p "corpus/$target"
  echo "== fuzz_$target for ${seconds} s (seed corpus fuzz/corpus/$target)"
  # One thread: the parse is single-threaded and the heap watch counts this
  # process's allocations. The log keeps the last lines for a failure.
  if ! OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "./bin/fuzz_$target" -max_total_time="$seconds" -max_len=65536 -timeout=20 -rss_limit_mb=4096 \
      -malloc_limit_mb=1024 -print_final_stats=1 "corpus/$target" "$root/fuzz/corpus/$target" \
      >"fuzz_$target.log" 2>&1; then
    tail -40 "fuzz_$target.log"
    echo "fuzz_$target: FAILED (input saved as build-fuzz/crash-* / leak-* / oom-* / timeout-*)"
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "fuzz_$target.log" | tr '\n' ' '
  echo
done
echo "== fuzzing found nothing"
