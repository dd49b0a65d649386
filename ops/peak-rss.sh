#!/usr/bin/env bash
# Peak resident memory of one gateway build at its maximum throughput (not a test): the
# gateway (two workers, the ledger on) and the mock upstream on this machine,
# `oha -z DUR -c C` non-stream chat, VmHWM at the end. Extra arguments are environment
# settings for the gateway; WRAP runs it under a tool (`WRAP="heaptrack -o /tmp/ht"`,
# with a `--features system-allocator` build, since heaptrack sees only malloc).
#
# Usage:  BIN=... C=64 DUR=10s bash ops/peak-rss.sh [VAR=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v oha >/dev/null 2>&1 || cargo install oha --locked
BIN="${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/switchyard}"; C="${C:-64}"; DUR="${DUR:-15s}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port); GW_PORT=$(free_port); W=$(mktemp -d)
"$BIN" mock-upstream --addr "127.0.0.1:$MOCK_PORT" > "$W/mock.log" 2>&1 &
MOCK=$!
cat > "$W/cfg.toml" <<CFG
[server]
http_addr = "127.0.0.1:$GW_PORT"
data_dir = "$W/data"
workers = 2
${EXTRA_SERVER:-}
[[providers]]
name = "up"
kind = "openai-compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "k"
concurrency = 1024
[[models]]
alias = "chat"
targets = [{ provider = "up", model = "m" }]
[[keys]]
id = "k1"
key = "sk-bench"
models = ["*"]
rpm = 100000000
tpm = 100000000000
CFG
env "$@" ${WRAP:-} "$BIN" serve --config "$W/cfg.toml" > "$W/gw.log" 2>&1 &
GW=$!
sleep 3
PID=$(pgrep -P $GW -f "serve --config" || echo $GW)
[ -d /proc/$PID ] || PID=$GW
START=$(awk '/VmRSS/{print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
oha -z "$DUR" -c "$C" --no-tui -m POST -H 'Authorization: Bearer sk-bench' -H 'content-type: application/json' \
  -d '{"model":"chat","messages":[{"role":"user","content":"hello there, how are you today?"}]}' \
  "http://127.0.0.1:$GW_PORT/v1/chat/completions" > "$W/oha.txt" 2>&1
HWM=$(awk '/VmHWM/{print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
END=$(awk '/VmRSS/{print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
RPS=$(grep -i "Requests/sec" "$W/oha.txt" | awk '{print $2}')
echo "c=$C rps=$RPS start=$((START/1024))MiB peak=$((HWM/1024))MiB end=$((END/1024))MiB pid=$PID"
kill -TERM $GW 2>/dev/null; sleep 2; kill $MOCK 2>/dev/null || true
rm -rf "$W"
