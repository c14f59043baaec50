#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Judges a run of the iommufd selftest from the harness's TAP output, against the
# allowlist. Shared by run.sh (FUSE, on the host) and tests/vm/run-vm-tests.sh (CUSE,
# in a VM), so both count the same way.
#
# - The whole-binary figure comes from the harness's "# Totals: pass:N fail:N xfail:N
#   xpass:N skip:N error:N" line (not the "PASSED: x / y" line, which counts skips as
#   passes) and its plan line "1..N". A run cut short (timeout, crash) has no Totals
#   line: the figure is then counted from the ok / not ok lines and marked incomplete.
# - Every allowlisted test must pass: "ok N name" without a directive. "not ok", "ok ...
#   # SKIP" and no line at all are failures, each reported with the test's output.
#   With --selection (the harness was given -r/-f/... options), allowlisted tests that
#   were not selected are listed but not judged.
#
# Usage: report.sh --tap FILE --allowlist FILE [--fail-nth-tap FILE]
#                  [--results FILE.json] [--figure FILE.json] [--version-file FILE]
#                  [--label TEXT] [--selection]
#   --tap           the iommufd binary's output (stdout and stderr)
#   --fail-nth-tap  the iommufd_fail_nth binary's output: its counts are reported (and
#                   its tests may be allowlisted too)
#   --results       GoogleTest-style JSON: one test per allowlisted entry
#   --figure        the whole-binary figure as a small JSON object
#   --version-file  build.sh's VERSION file (kernel source version), for the figure
#   --label         prefix of the printed lines (default: "iommufd selftest")
# Exit status: 0 if every (judged) allowlisted test passed, 1 otherwise, 2 on misuse.
set -euo pipefail

TAP=''
FAIL_NTH_TAP=''
ALLOWLIST=''
RESULTS=''
FIGURE=''
VERSION_FILE=''
LABEL='iommufd selftest'
SELECTION=0
all=''   # the results of both binaries (results_of lines)

die() { echo "report: error: $*" >&2; exit 2; }

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --tap) TAP=${2:?}; shift 2 ;;
            --fail-nth-tap) FAIL_NTH_TAP=${2:?}; shift 2 ;;
            --allowlist) ALLOWLIST=${2:?}; shift 2 ;;
            --results) RESULTS=${2:?}; shift 2 ;;
            --figure) FIGURE=${2:?}; shift 2 ;;
            --version-file) VERSION_FILE=${2:?}; shift 2 ;;
            --label) LABEL=${2:?}; shift 2 ;;
            --selection) SELECTION=1; shift ;;
            -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; exit 0 ;;
            *) die "unknown argument: $1" ;;
        esac
    done
    if [ -z "$TAP" ] || [ -z "$ALLOWLIST" ]; then die "--tap and --allowlist are required"; fi
    [ -f "$TAP" ] || die "no such file: $TAP"
    [ -f "$ALLOWLIST" ] || die "no such file: $ALLOWLIST"
    [ -z "$FAIL_NTH_TAP" ] || [ -f "$FAIL_NTH_TAP" ] || die "no such file: $FAIL_NTH_TAP"
}

# The TAP output without carriage returns (a serial console adds them).
clean() { sed 's/\r$//' "$1"; }

# One line per test result: "status<TAB>number<TAB>name<TAB>reason", status being
# pass, fail, skip, xfail or xpass.
results_of() {
    clean "$1" | awk '
        /^(not )?ok [0-9]+ [^ ]+/ {
            notok = ($1 == "not"); num = notok ? $3 : $2; name = notok ? $4 : $3
            rest = $0; sub(/^(not )?ok [0-9]+ [^ ]+/, "", rest)
            status = notok ? "fail" : "pass"; reason = rest
            if (!notok && match(rest, /^ # (SKIP|XFAIL|XPASS)/)) {
                status = tolower(substr(rest, 4, RLENGTH - 3))
                reason = substr(rest, RLENGTH + 1)
            } else {
                sub(/^ # */, "", reason)
            }
            sub(/^ +/, "", reason)
            printf "%s\t%s\t%s\t%s\n", status, num, name, reason
        }'
}

# "pass fail xfail xpass skip error planned complete" for one binary's output.
figure_of() {
    local file=$1 totals plan
    plan=$(clean "$file" | sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' | head -n 1)
    totals=$(clean "$file" | sed -n \
        's/^# Totals: pass:\([0-9]*\) fail:\([0-9]*\) xfail:\([0-9]*\) xpass:\([0-9]*\) skip:\([0-9]*\) error:\([0-9]*\)$/\1 \2 \3 \4 \5 \6/p' |
        tail -n 1)
    if [ -n "$totals" ]; then
        echo "$totals ${plan:-0} 1"
    else
        results_of "$file" | awk -v plan="${plan:-0}" '
            { n[$1]++ }
            END { printf "%d %d %d %d %d 0 %d 0\n", n["pass"], n["fail"], n["xfail"],
                  n["xpass"], n["skip"], plan }'
    fi
}

# Prints the figure line of one binary; sets FIG_* for the JSON.
print_figure() {
    local name=$1 file=$2 pass fail xfail xpass skip error planned complete
    read -r pass fail xfail xpass skip error planned complete < <(figure_of "$file")
    FIG_PASS=$pass FIG_FAIL=$fail FIG_XFAIL=$xfail FIG_XPASS=$xpass FIG_SKIP=$skip
    FIG_ERROR=$error FIG_TOTAL=$planned FIG_COMPLETE=$complete
    echo "$name: $pass/$planned passed (pass:$pass fail:$fail xfail:$xfail xpass:$xpass skip:$skip error:$error)"
    if [ "$planned" -eq 0 ]; then
        echo "$name: WARNING: no TAP plan line: the binary did not start properly"
    elif [ "$complete" -eq 0 ]; then
        echo "$name: WARNING: the run did not finish (no Totals line): $((pass + fail + xfail + xpass + skip)) of $planned tests reported; counts are from the ok/not ok lines"
    fi
}

# The allowlist's names, comments and blank lines dropped, each once, in file order.
allowlist_names() {
    sed -e 's/#.*//' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' "$ALLOWLIST" |
        awk 'NF && !seen[$0]++'
}

# The output of test NAME: from its RUN line to its result line.
test_output() {
    local file=$1 name=$2
    # awk stops at the test's result line, and a reader may stop early (head -c): a
    # SIGPIPE on either side of this pipe is expected, not a failure of the stage.
    { clean "$file" || true; } | awk -v name="$name" '
        $0 ~ /^# +RUN +/ && $NF == "..." && $(NF - 1) == name { on = 1 }
        on { print }
        on && /^(not )?ok [0-9]+ / { exit }' || true
}

main() {
    parse_args "$@"
    all=$(mktemp)
    trap 'rm -f "$all"' EXIT
    results_of "$TAP" >"$all"
    [ -z "$FAIL_NTH_TAP" ] || results_of "$FAIL_NTH_TAP" >>"$all"

    print_figure "$LABEL" "$TAP"
    local whole
    whole=$(jq -n --argjson pass "$FIG_PASS" --argjson fail "$FIG_FAIL" \
        --argjson xfail "$FIG_XFAIL" --argjson xpass "$FIG_XPASS" --argjson skip "$FIG_SKIP" \
        --argjson error "$FIG_ERROR" --argjson total "$FIG_TOTAL" \
        --argjson complete "$FIG_COMPLETE" \
        '{passed: $pass, total: $total, pass: $pass, fail: $fail, xfail: $xfail,
          xpass: $xpass, skip: $skip, error: $error, complete: ($complete == 1)}')
    local fail_nth=null
    if [ -n "$FAIL_NTH_TAP" ]; then
        print_figure "iommufd_fail_nth" "$FAIL_NTH_TAP"
        if [ "$FIG_SKIP" -gt 0 ] && [ "$FIG_SKIP" -eq "$FIG_TOTAL" ]; then
            echo "iommufd_fail_nth: all $FIG_SKIP skipped: $(awk -F'\t' '$1 == "skip" { print $4; exit }' "$all")"
        fi
        fail_nth=$(jq -n --argjson pass "$FIG_PASS" --argjson fail "$FIG_FAIL" \
            --argjson skip "$FIG_SKIP" --argjson total "$FIG_TOTAL" \
            --argjson complete "$FIG_COMPLETE" \
            '{passed: $pass, total: $total, pass: $pass, fail: $fail, skip: $skip,
              complete: ($complete == 1)}')
    fi

    # Judge the allowlist: name<TAB>verdict<TAB>detail per entry.
    local name line status reason verdicts='' judged=0 bad=0 unselected=0
    while IFS= read -r name; do
        line=$(awk -F'\t' -v n="$name" '$3 == n { print; exit }' "$all")
        if [ -n "$line" ]; then
            IFS=$'\t' read -r status _ _ reason <<<"$line"
        else
            status=missing reason=''
        fi
        if [ "$status" = missing ] && [ "$SELECTION" -eq 1 ]; then
            unselected=$((unselected + 1))
            continue
        fi
        judged=$((judged + 1))
        [ "$status" = pass ] || bad=$((bad + 1))
        verdicts+="$name"$'\t'"$status"$'\t'"$reason"$'\n'
    done < <(allowlist_names)

    local total_entries
    total_entries=$(allowlist_names | wc -l)
    echo "$LABEL allowlist: $((judged - bad))/$judged allowlisted tests passed" \
        "($total_entries entries$([ "$unselected" -eq 0 ] || echo ", $unselected not selected"))"
    if [ "$bad" -gt 0 ]; then
        echo "$LABEL: ALLOWLISTED TESTS THAT DID NOT PASS:"
        while IFS=$'\t' read -r name status reason; do
            if [ -z "$name" ] || [ "$status" = pass ]; then continue; fi
            case $status in
                fail) echo "  FAIL  $name${reason:+ ($reason)}" ;;
                skip) echo "  SKIP  $name ($reason): a skip is not a pass" ;;
                missing) echo "  MISSING  $name: no result line (unknown name, or the run stopped early)" ;;
                *) echo "  $(tr '[:lower:]' '[:upper:]' <<<"$status")  $name${reason:+ ($reason)}" ;;
            esac
            { test_output "$TAP" "$name"; [ -z "$FAIL_NTH_TAP" ] || test_output "$FAIL_NTH_TAP" "$name"; } |
                sed 's/^/        /'
        done <<<"$verdicts"
    fi

    if [ -n "$RESULTS" ]; then
        mkdir -p "$(dirname "$RESULTS")"
        local cases=()
        while IFS=$'\t' read -r name status reason; do
            [ -n "$name" ] || continue
            local out=''
            [ "$status" = pass ] || out=$({ test_output "$TAP" "$name"
                [ -z "$FAIL_NTH_TAP" ] || test_output "$FAIL_NTH_TAP" "$name"; } | head -c 8000)
            cases+=("$(jq -nc --arg name "$name" --arg status "$status" --arg reason "$reason" \
                --arg out "$out" '
                {name: $name, classname: ($name | sub("\\.[^.]*$"; "")), status: "RUN",
                 result: "COMPLETED"}
                + (if $status == "pass" then {} else
                   {failures: [{failure: ("allowlisted test did not pass: " + $status
                       + (if $reason != "" then " (" + $reason + ")" else "" end)
                       + (if $out != "" then "\n" + $out else "" end)), type: ""}]} end)')")
        done <<<"$verdicts"
        printf '%s\n' "${cases[@]}" | jq -s --arg suite "$LABEL" '
            {tests: length, failures: ([.[] | select(.failures)] | length), errors: 0,
             name: $suite,
             testsuites: [{name: $suite, tests: length,
                           failures: ([.[] | select(.failures)] | length),
                           testsuite: .}]}' >"$RESULTS"
    fi

    if [ -n "$FIGURE" ]; then
        mkdir -p "$(dirname "$FIGURE")"
        local version=unknown pinned=null
        if [ -n "$VERSION_FILE" ] && [ -f "$VERSION_FILE" ]; then
            version=$(sed -n 's/^version=//p' "$VERSION_FILE")
            case $(sed -n 's/^pinned=//p' "$VERSION_FILE") in
                yes) pinned=true ;; no) pinned=false ;;
            esac
        fi
        jq -nc --argjson whole "$whole" --argjson fail_nth "$fail_nth" \
            --arg version "$version" --argjson pinned "$pinned" \
            --argjson judged "$judged" --argjson bad "$bad" --argjson selection "$SELECTION" '
            $whole + {selection: ($selection == 1), kernel_source: $version, pinned: $pinned,
                      allowlist: {judged: $judged, passed: ($judged - $bad)},
                      fail_nth: $fail_nth}' >"$FIGURE"
    fi
    [ "$bad" -eq 0 ]
}

main "$@"
