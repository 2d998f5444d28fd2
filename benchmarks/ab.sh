#!/usr/bin/env bash
# A/B of two checkouts of Pounce on the hello workload, alternating, one after the other.
#
#   benchmarks/ab.sh OLD_CHECKOUT NEW_CHECKOUT [ROUNDS]      (each with its own .venv)
#   NEW_ENV="POUNCE_REQUEST_ID_ENABLED=0" benchmarks/ab.sh ../old . 10
#
# Both servers run at once (one worker each, pinned to CPU 0, the defaults of
# `pounce serve` plus --no-access-log and --loop asyncio, or $LOOP: set it, since
# auto means uvloop wherever it is installed); wrk (-t1 -c64, 5 s, pinned to CPU 1)
# loads them in turn, ROUNDS times (default 10), so drift of a shared machine hits both
# alike.  Prints each round's req/s and the means with the difference.  Needs wrk
# and curl.
set -euo pipefail
old=$(cd "$1" && pwd) new=$(cd "$2" && pwd) rounds=${3:-10}
start() { # checkout port extra-env
    (cd "$1" && exec taskset -c 0 env PYTHONPATH=benchmarks $3 .venv/bin/python -m pounce serve \
        pounce_bench.app:app --host 127.0.0.1 --port "$2" --workers 1 --no-access-log \
        --log-level warning --loop "${LOOP:-asyncio}") >/dev/null 2>&1 &
    echo $!
}
pa=$(start "$old" 18001 "${OLD_ENV:-}")
pb=$(start "$new" 18002 "${NEW_ENV:-}")
trap 'kill $pa $pb 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -sf -o /dev/null http://127.0.0.1:18001/hello && curl -sf -o /dev/null http://127.0.0.1:18002/hello && break
    sleep 0.2
done
run() { taskset -c 1 wrk -t1 -c64 -d"$1" "http://127.0.0.1:$2/hello" | awk '/Requests\/sec/{print $2}'; }
run 2s 18001 >/dev/null; run 2s 18002 >/dev/null
for _ in $(seq "$rounds"); do echo "$(run 5s 18001) $(run 5s 18002)"; done |
    awk '{print; a += $1; b += $2; n++}
         END {printf "old %.0f req/s, new %.0f req/s: %+.2f%%\n", a / n, b / n, (b / a - 1) * 100}'
