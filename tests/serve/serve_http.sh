#!/usr/bin/env bash
# serve_http.sh - the CTest test of `vx-serve serve` (tests/serve/CMakeLists.txt): starts the
# server on stories260K with quest compiled from stdlib, drives it with serve_load (clients
# with mixed prompt lengths, half streaming, greedy answers compared with `vx-serve generate`;
# every bad input of issue 10 while they run; abandoned streams, then every KV page free),
# floods a second server with a small pool (answers or 503 + Retry-After), stops both with
# SIGTERM (exit 0), and checks the log holds no prompt text. Exits 0 passed, 1 failed, 77
# skipped (models absent). Writes only under WORK_DIR.
#   usage: serve_http.sh VX_SERVE SERVE_LOAD MODELS_DIR WORK_DIR VXC [SCALE]
set -u
serve=$1 load=$2 models=$3 work=$4 vxc=$5 scale=${6:-1}
mkdir -p "$work"
fail() { echo "FAIL (serve_http): $*"; for p in ${pids:-}; do kill -KILL "$p" 2>/dev/null; done; exit 1; }
for f in stories260K.bin tok512.bin; do
  [ -f "$models/$f" ] || { echo "SKIP: $models/$f not found (the test models live in ../shared/models)"; exit 77; }
done
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$vxc" -O2 "$here/../../stdlib/quest.vx" -o "$work/quest.vxp" || fail "vxc quest"
model=(--model "$models/stories260K.bin" --tokenizer "$models/tok512.bin" --policy "$work/quest.vxp"
       --param budget=32)
pids=

# start LOG ARGS...: starts a server on a free port; sets $pid and $port
start() {
  local log=$1
  shift
  "$serve" serve "${model[@]}" --port 0 "$@" 2>"$log" &
  pid=$!
  pids="$pids $pid"
  for _ in $(seq 1 300); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log"; fail "the server did not start"; }
    sleep 0.1
  done
  fail "the server did not say where it listens"
}

# stop PID LOG: SIGTERM, then exit 0 within 15 s
stop() {
  kill -TERM "$1"
  for _ in $(seq 1 150); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$1" 2>/dev/null && fail "the server did not stop within 15 s of SIGTERM"
  wait "$1"
  local rc=$?
  [ "$rc" -eq 0 ] || { tail -5 "$2"; fail "the server exited $rc after SIGTERM"; }
  grep -q "stopped in" "$2" || fail "no stop line in $2"
}

start "$work/server.log" --batch 8 --body-timeout 2
echo "server on port $port"
"$load" --port "$port" --clients $((16 * scale)) --rounds 2 --max-tokens 24 --bad \
  --abandon $((40 * scale)) --timeout 60 \
  --reference "$serve" "${model[@]}" -- || { tail -20 "$work/server.log"; fail "serve_load"; }
echo "server log: $(grep -c ' request ' "$work/server.log") request lines"
grep -q "Once upon a time" "$work/server.log" && fail "the log holds prompt text"
srv1=$pid

# a pool of 24 pages (384 tokens) and a queue of 2: requests wait, or get 503 with
# Retry-After; the two longest prompts can never fit (400 at once)
start "$work/server2.log" --batch 4 --kv-pages 24 --queue 2
"$load" --port "$port" --flood $((12 * scale)) --max-tokens 24 --timeout 60 \
  --reference "$serve" "${model[@]}" -- >"$work/flood.txt" ||
  { cat "$work/flood.txt"; tail -20 "$work/server2.log"; fail "flood"; }
cat "$work/flood.txt"
grep -q " [1-9][0-9]* refused with 503" "$work/flood.txt" || fail "the flood got no 503"
grep -q " [1-9][0-9]* as never fitting" "$work/flood.txt" || fail "nothing refused as never fitting"
stop "$pid" "$work/server2.log"
stop "$srv1" "$work/server.log"
echo "ok: both servers stopped with exit 0"
