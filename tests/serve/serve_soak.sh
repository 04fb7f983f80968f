#!/usr/bin/env bash
# serve_soak.sh - the soak of issue 10 (not a CTest test: it takes minutes): starts
# `vx-serve serve` on stories260K with quest, drives it with serve_load --duration (clients
# of mixed prompt lengths, half streaming, answers checked against generate, a stream dropped
# every eighth round), samples the server's resident memory every 10 s, then checks that
# every KV page is free, that resident memory after warm-up grew by at most 5%, and that
# SIGTERM stops the server with exit 0. Prints the samples and a summary.
#   usage: serve_soak.sh BUILD_DIR MODELS_DIR SECONDS [CLIENTS]
set -u
build=$1 models=$2 secs=$3 clients=${4:-8}
serve=$build/runtime/serve/vx-serve load=$build/runtime/serve/tests/serve_load
work=$build/soak
mkdir -p "$work"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$build/vxc" -O2 "$here/../../stdlib/quest.vx" -o "$work/quest.vxp" || exit 1
model=(--model "$models/stories260K.bin" --tokenizer "$models/tok512.bin" --policy "$work/quest.vxp"
       --param budget=32)
"$serve" serve "${model[@]}" --port 0 --batch 8 2>"$work/server.log" &
pid=$!
until port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/server.log") && [ -n "$port" ]; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
"$load" --port "$port" --clients "$clients" --duration "$secs" --max-tokens 24 \
  --reference "$serve" "${model[@]}" -- >"$work/load.txt" 2>&1 &
lpid=$!
: >"$work/rss.txt"
t=0
while kill -0 "$lpid" 2>/dev/null; do
  echo "$t $(rss)" >>"$work/rss.txt"
  sleep 10
  t=$((t + 10))
done
wait "$lpid"
lrc=$?
echo "$t $(rss)" >>"$work/rss.txt"
tail -3 "$work/load.txt"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
metrics=$(cat <&3)
exec 3<&-
echo "$metrics" | grep -E '^vx_(kv_pages|running|queue_depth|requests_total|generations_total)'
kill -TERM "$pid"
wait "$pid"
src=$?
# warm-up: the first 60 s; growth: the last sample against the first after warm-up
awk -v lrc="$lrc" -v src="$src" '
  $1 >= 60 && !w { w = $2 } { last = $2; if ($2 > max) max = $2 }
  END { g = 100 * (last - w) / w
        printf "rss after warm-up %d kB, at the end %d kB, peak %d kB: growth %.2f%%\n", w, last, max, g
        printf "serve_load exit %d, server exit %d after SIGTERM\n", lrc, src
        exit !(g <= 5 && lrc == 0 && src == 0) }' "$work/rss.txt"
