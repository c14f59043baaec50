#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A bounded run of dispatcher_fuzzer: the seed corpus is copied to a scratch corpus,
# the fuzzer runs for SECONDS, and any crash, leak, timeout, out-of-memory or
# sanitizer report fails the run (exit 1) with the reproducer and the command that
# replays it. Prints one summary line; with RESULTS_JSON also writes the figures.
#
#   tests/fuzz/run-fuzz.sh BUILD_DIR SECONDS [RESULTS_JSON]
#
# Environment: FUZZ_ARTIFACTS (default BUILD_DIR/fuzz-artifacts) receives crash-*,
# leak-*, timeout-*, oom-* inputs; FUZZ_EXTRA_FLAGS is appended to the libFuzzer
# flags (e.g. -use_value_profile=1 or -seed=N); KEEP_WORKDIR=1 keeps the scratch
# corpus and the log.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS [RESULTS_JSON]" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
seconds=$2
results_json=${3:-}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { echo "SECONDS must be a positive integer" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
fuzzer=$build_dir/tests/fuzz/dispatcher_fuzzer
seeds=$here/corpus
[[ -x $fuzzer ]] || { echo "no $fuzzer: configure with -DIOASID_FUZZ=ON (clang, IOASID_SANITIZE=address)" >&2; exit 2; }

artifacts=${FUZZ_ARTIFACTS:-$build_dir/fuzz-artifacts}
mkdir -p "$artifacts"
artifacts=$(cd "$artifacts" && pwd)
workdir=$(mktemp -d "${TMPDIR:-/tmp}/ioasid-fuzz.XXXXXX")
cleanup() { [[ ${KEEP_WORKDIR:-0} == 1 ]] || rm -rf "$workdir"; }
trap cleanup EXIT
mkdir "$workdir/corpus"
cp "$seeds"/* "$workdir/corpus/"
corpus_before=$(find "$workdir/corpus" -type f | wc -l)
log=$workdir/fuzz.log

# Artifacts already there belong to earlier runs; only new ones count.
before_list=$workdir/artifacts-before
(cd "$artifacts" && ls -1) > "$before_list"

# -timeout: one input may wait for a few page responses (10 ms each) and the 5 s
# drain bound, never for 10 s. -max_len: programs of up to kMaxSteps steps fit.
# New inputs go to the scratch corpus (the first directory); the seeds are read only.
flags=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=4096
       -print_final_stats=1 -artifact_prefix="$artifacts/")
# shellcheck disable=SC2206
extra=(${FUZZ_EXTRA_FLAGS:-})
start=$(date +%s.%N)
set +e
"$fuzzer" "${flags[@]}" "${extra[@]}" "$workdir/corpus" "$seeds" > "$log" 2>&1
status=$?
set -e
end=$(date +%s.%N)

final_stat() { sed -n "s/^stat::$1: *\([0-9.]*\).*/\1/p" "$log" | tail -n1; }
executions=$(final_stat number_of_executed_units)
exec_per_second=$(final_stat average_exec_per_sec)
# The run time libFuzzer reports ("Done N runs in S second(s)"), else the wall clock.
run_seconds=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n1)
[[ -n $run_seconds ]] || run_seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%d", b - a }')
# Coverage (edges) and corpus size from the last status line (DONE, or the last
# pulse before a crash).
last_status=$(grep -E '^#[0-9]+' "$log" | tail -n1 || true)
coverage=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last_status")
features=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last_status")
corpus_after=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<< "$last_status")
: "${executions:=0}" "${exec_per_second:=0}" "${coverage:=0}" "${features:=0}" "${corpus_after:=$corpus_before}"

new_artifacts=()
while IFS= read -r name; do
  [[ -n $name ]] && new_artifacts+=("$artifacts/$name")
done < <(cd "$artifacts" && ls -1 | grep -E '^(crash|leak|timeout|oom)-' | grep -vxF -f "$before_list" || true)
reports=$(grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error:|==ioasid-fuzz==|ALARM: working on the last Unit|Out-of-memory' "$log" || true)
crashes=${#new_artifacts[@]}
if [[ $status -ne 0 || $reports -gt 0 ]] && [[ $crashes -eq 0 ]]; then crashes=1; fi

summary="fuzz: $executions executions in $run_seconds s ($exec_per_second exec/s), corpus $corpus_before -> $corpus_after inputs, coverage $coverage edges ($features features), $crashes crashes"
if [[ -n $results_json ]]; then
  printf '{"executions": %s, "seconds": %s, "exec_per_second": %s, "corpus_before": %s, "corpus_after": %s, "coverage": %s, "features": %s, "crashes": %s}\n' \
    "$executions" "$run_seconds" "$exec_per_second" "$corpus_before" "$corpus_after" "$coverage" "$features" "$crashes" \
    > "$results_json"
fi

if [[ $crashes -gt 0 ]]; then
  echo "---- fuzzer log (last 80 lines; whole log kept in $workdir/fuzz.log) ----"
  tail -n 80 "$log"
  KEEP_WORKDIR=1
  echo "----"
  for artifact in "${new_artifacts[@]}"; do
    echo "reproducer: $artifact"
    echo "replay:     IOASID_FUZZ_TRACE=1 $fuzzer $artifact"
  done
  [[ ${#new_artifacts[@]} -gt 0 ]] || echo "fuzzer exited with status $status and no artifact; see the log above"
  echo "$summary"
  exit 1
fi
echo "$summary"
