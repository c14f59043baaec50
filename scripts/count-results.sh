#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Totals GoogleTest JSON reports: prints one line per report, then
# "N passed, N failed". A stage that failed without a report counts as one failure
# (first argument: how many such stage failures the caller saw).
set -uo pipefail
stage_failures=$1; shift
passed=0; failed=0; skipped=0; reports=0
for dir in "$@"; do
  [ -d "$dir" ] || continue
  for report in "$dir"/*.json; do
    [ -f "$report" ] || continue
    reports=$((reports + 1))
    read -r t f s < <(jq -r '[.tests, (.failures + .errors),
        ([.testsuites[].testsuite[] | select(.result == "SKIPPED")] | length)] | @tsv' "$report") || {
      echo "unreadable report: $report"; failed=$((failed + 1)); continue; }
    label="$(basename "$(dirname "$dir")")/$(basename "$report" .json)"
    printf '  %-45s %5d passed %4d failed %4d skipped\n' "$label" $((t - f - s)) "$f" "$s"
    passed=$((passed + t - f - s)); failed=$((failed + f)); skipped=$((skipped + s))
  done
done
# A stage whose tests all passed but that still failed (crash, daemon exit status,
# missing report) is one more failure; one whose failures are already counted is not.
[ "$failed" -eq 0 ] && failed=$stage_failures
[ "$reports" -eq 0 ] && failed=$((failed > 0 ? failed : 1))
[ "$skipped" -gt 0 ] && echo "($skipped skipped)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
