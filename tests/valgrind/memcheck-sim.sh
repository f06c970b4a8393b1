#!/bin/sh
# memcoordd under valgrind's memcheck, on the simulator (tests/sim/faults.ini: guests that come
# and go, a busy guest, failing calls, two lost connections), for a few simulated minutes:
# no error and no definite leak, and a clean exit on SIGTERM.
#   tests/valgrind/memcheck-sim.sh MEMCOORDD SOURCE_ROOT OUT_DIR [SECONDS]
# MEMCOORDD must be built without sanitizers (valgrind cannot run them).
set -eu
daemon=$1 src=$2 out=$3 seconds=${4:-20}
mkdir -p "$out"
log="$out/memcheck.log"
conf="$out/memcoord.conf"
printf '[Coordinator]\n' >"$conf"
# 10x: faults.ini's first lost connection comes at the 12th set_target, the second at 150 s.
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --error-exitcode=99 --log-file="$log" \
    "$daemon" --bus none --connect "sim:$src/tests/sim/faults.ini" --sim-speed 10 --interval 1 \
    --config "$conf" >"$out/memcoordd.log" 2>&1 &
pid=$!
sleep "$seconds"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
tail -n 20 "$log"
grep -q 'Lost the connection' "$out/memcoordd.log" || { echo "memcheck-sim: the run saw no lost connection" >&2; exit 1; }
grep -q 'ERROR SUMMARY: 0 errors' "$log" || { echo "memcheck-sim: memcheck found errors (see $log)" >&2; exit 1; }
if grep -q 'definitely lost: [1-9]' "$log"; then
    echo "memcheck-sim: definite leaks (see $log)" >&2
    exit 1
fi
[ "$rc" = 0 ] || { echo "memcheck-sim: memcoordd exited $rc" >&2; exit 1; }
echo "memcheck-sim: no error, no definite leak, clean exit"
