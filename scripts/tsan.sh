#!/usr/bin/env bash
# ThreadSanitizer over the kernel tests (the fused attention, threads and
# determinism, ops, the attention family). libgomp is not instrumented, so
# this build uses clang with LLVM's OpenMP runtime (libomp) and its Archer
# tool, which tells ThreadSanitizer about OpenMP's barriers, locks and task
# dependencies. A self-check first shows that the setup reports a real race
# and stays silent on barrier-synchronised code. OpenBLAS is not
# instrumented (attn calls it single-threaded inside its own tiles).
#   scripts/tsan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${ATTN_JOBS:-2}
archer=$(clang++ -print-resource-dir)/../../libarcher.so
[[ -f $archer ]] || archer=/usr/lib/llvm-14/lib/libarcher.so
export OMP_TOOL_LIBRARIES=$archer OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
export TSAN_OPTIONS="ignore_noninstrumented_modules=1 second_deadlock_stack=1 exitcode=66"

cmake -S . -B build-tsan -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=thread \
  -DATTN_BUILD_BENCHMARKS=OFF -DATTN_BUILD_TOOLS=OFF -DATTN_BUILD_EXAMPLES=OFF -DATTN_BUILD_PYTHON=OFF -DATTN_WITH_MPI=OFF >/dev/null
cmake --build build-tsan -j"$jobs" --target test_threads test_attention test_ops test_family

cd build-tsan
clang++ -O1 -g -fsanitize=thread -fopenmp ../tests/tsan_selfcheck.cpp -o tsan_selfcheck
ARCHER_OPTIONS=verbose=1 ./tsan_selfcheck >selfcheck.log 2>&1 || { cat selfcheck.log; echo "tsan: false report on barrier-synchronised code"; exit 1; }
grep -q "Archer detected OpenMP application with TSan" selfcheck.log || { cat selfcheck.log; echo "tsan: Archer is not active"; exit 1; }
if ./tsan_selfcheck race >race.log 2>&1; then cat race.log; echo "tsan: a real race went unreported"; exit 1; fi
grep -q "WARNING: ThreadSanitizer: data race" race.log || { cat race.log; echo "tsan: no race report"; exit 1; }
echo "tsan self-check: the barrier case is silent, the race is reported"

for t in threads attention ops family; do
  echo "== test_$t under ThreadSanitizer"
  if ! ./bin/test_$t --gtest_brief=1 >"test_$t.log" 2>&1; then
    tail -80 "test_$t.log"
    echo "test_$t: FAILED under ThreadSanitizer (exit status 66: a report)"
    exit 1
  fi
  tail -2 "test_$t.log"
done
echo "== ThreadSanitizer: no reports"
