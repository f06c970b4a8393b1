#!/bin/sh
# Runs one libFuzzer harness for a bounded time:
#   run-fuzzer.sh HARNESS SEED_DIR WORK_DIR SECONDS [DICTIONARY]
# New inputs go to WORK_DIR, never to the seed corpus in the source tree; crash inputs go next
# to WORK_DIR. Ends with libFuzzer's figures (runs, exec/s), and fails on any crash.
set -eu
harness=$1 seeds=$2 work=$3 seconds=$4
dict=${5:+-dict=$5}
mkdir -p "$work"
# libFuzzer's own exit status for a crash is 77, which meson reads as a skip: make it 1.
exec "$harness" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -error_exitcode=1 -timeout_exitcode=1 $dict \
    -artifact_prefix="$(dirname "$work")/crash-$(basename "$harness")-" "$work" "$seeds"
