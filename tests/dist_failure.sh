#!/usr/bin/env bash
# Runs dist_failure under mpirun with 2 ranks: once with rank 1 killed, once
# with it hung. Each job must end with a non-zero status within 60 s; the hung
# case must end through rank 0's attn::Error (the timeout), not the launcher.
set -u
mpiexec=$1 prog=$2
fail=0
for mode in kill hang; do
  start=$(date +%s)
  out=$(timeout 120 "$mpiexec" -np 2 --oversubscribe "$prog" "$mode" 2>&1)
  rc=$?
  took=$(( $(date +%s) - start ))
  echo "--- $mode: exit status $rc after $took s"
  echo "$out" | grep -v '^\s*$' | head -20
  if (( rc == 0 || rc == 124 )); then echo "FAIL: $mode: the job should fail, and within the timeout"; fail=1; fi
  if (( took > 60 )); then echo "FAIL: $mode: took $took s"; fail=1; fi
  if [[ $mode == hang ]] && ! grep -q "timed out after 5 s on rank 0 of 2" <<<"$out"; then
    echo "FAIL: hang: rank 0 did not report the timeout"; fail=1
  fi
done
exit $fail
