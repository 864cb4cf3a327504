#!/usr/bin/env bash
# Fuzzes every libFuzzer target of a LOGITKIT_BUILD_FUZZERS=ON build for a bounded time.
#
#   tests/fuzz/run_fuzzers.sh BUILD_DIR SECONDS
#
# Each target runs for SECONDS (wall time, -max_total_time) in FUZZ_JOBS parallel jobs (default:
# the number of cores, at most 8), starting from a scratch copy of tests/fuzz/corpus: inputs found
# on the way stay in the scratch directory (FUZZ_WORK_DIR, default a fresh mktemp -d), never in the
# checked-in corpus. Prints each target's executions, exec/s and coverage (libFuzzer's cov: edges
# and ft: features). Exits non-zero when a target crashed (a sanitizer report, an invariant
# failure, an exception other than logitkit::Error, a timeout or out-of-memory): the input is
# saved under FUZZ_WORK_DIR/<target>/artifacts, and its path and the command that reproduces it are
# printed (add LOGITKIT_FUZZ_VERBOSE=1 to that command to see the decoded call and its inputs).
# Minimize it (fuzz_ops -minimize_crash=1 -runs=10000 FILE), add it to tests/fuzz/corpus as a
# regression test named regress-<family>-<what> (ctest runs every file there as fuzz_corpus/<file>),
# and fix the bug.
#
# Environment: FUZZ_JOBS, FUZZ_WORK_DIR, FUZZ_TARGETS (names, default every fuzz_* in the build),
# LOGITKIT_FUZZ_FAMILY (only inputs of one family, e.g. route), LOGITKIT_FUZZ_ISA (only inputs that
# draw these ISAs, e.g. scalar,avx2), FUZZ_ARGS (extra libFuzzer flags, e.g. -use_value_profile=1).
set -euo pipefail

if [[ $# -ne 2 || ! $2 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
corpus_src=$here/corpus
fuzz_bin_dir=$build_dir/tests/fuzz

cores=$(nproc 2>/dev/null || echo 2)
jobs=${FUZZ_JOBS:-$((cores < 8 ? cores : 8))}
work=${FUZZ_WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/logitkit-fuzz.XXXXXX")}
mkdir -p "$work"

if [[ -n ${FUZZ_TARGETS:-} ]]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  targets=()
  for f in "$fuzz_bin_dir"/fuzz_*; do
    [[ -f $f && -x $f ]] && targets+=("$(basename "$f")")
  done
fi
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "no fuzz targets in $fuzz_bin_dir: configure with -DLOGITKIT_BUILD_FUZZERS=ON (clang) and build" >&2
  exit 2
fi

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

status=0
summary=()
for target in "${targets[@]}"; do
  bin=$fuzz_bin_dir/$target
  [[ -x $bin ]] || { echo "missing $bin" >&2; exit 2; }
  t_work=$work/$target
  rm -rf "$t_work"
  mkdir -p "$t_work/corpus" "$t_work/artifacts" "$t_work/logs"
  cp "$corpus_src"/* "$t_work/corpus/" 2>/dev/null || true
  seeds=$(find "$t_work/corpus" -type f | wc -l)
  echo "== $target: ${seconds}s, $jobs jobs, $seeds seed inputs, work dir $t_work"
  # -jobs=N -workers=N: N fuzzing processes side by side, each for the whole time budget, sharing
  # the scratch corpus; each logs to logs/fuzz-<i>.log. A crashing job stops and is not replaced
  # (-jobs counts jobs run, not slots).
  rc=0
  (cd "$t_work/logs" && "$bin" -max_total_time="$seconds" -jobs="$jobs" -workers="$jobs" \
     -timeout=60 -rss_limit_mb=4096 -max_len=16384 -print_final_stats=1 \
     -artifact_prefix="$t_work/artifacts/" ${FUZZ_ARGS:-} "$t_work/corpus" >"$t_work/logs/main.log" 2>&1) || rc=$?
  execs=0
  cov=0
  ft=0
  for log in "$t_work"/logs/fuzz-*.log; do
    [[ -f $log ]] || continue
    n=$(grep -h '^stat::number_of_executed_units:' "$log" | tail -1 | awk '{print $2}')
    [[ -z $n ]] && n=$(grep -ohE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    execs=$((execs + ${n:-0}))
    line=$(grep -hE '^#[0-9]+.*cov: [0-9]+' "$log" | tail -1 || true)
    c=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$line")
    f=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$line")
    ((${c:-0} > cov)) && cov=$c
    ((${f:-0} > ft)) && ft=$f
  done
  corpus_now=$(find "$t_work/corpus" -type f | wc -l)
  rate=$((execs / (seconds > 0 ? seconds : 1)))
  line=$(printf '%-12s %10d execs  %7d exec/s  cov %6d  ft %7d  corpus %d -> %d' \
         "$target" "$execs" "$rate" "$cov" "$ft" "$seeds" "$corpus_now")
  echo "$line"
  summary+=("$line")
  crashes=()
  while IFS= read -r -d '' f; do crashes+=("$f"); done < <(find "$t_work/artifacts" -type f -print0)
  if [[ ${#crashes[@]} -gt 0 || $rc -ne 0 ]]; then
    status=1
    echo "!! $target: exit status $rc, ${#crashes[@]} crash input(s):"
    for f in "${crashes[@]}"; do
      echo "   $f"
      echo "   reproduce: $bin $f"
    done
    for log in "$t_work"/logs/fuzz-*.log; do
      grep -qE 'ERROR: |FINDING|runtime error|deadly signal|Timeout|out-of-memory' "$log" 2>/dev/null || continue
      echo "---- $log (first report) ----"
      grep -nE -m1 -A40 'ERROR: |==logitkit-fuzz==|runtime error:|deadly signal|Timeout|out-of-memory' "$log" | head -60
    done
  fi
done

echo "== summary (work dir $work)"
printf '%s\n' "${summary[@]}"
exit $status
