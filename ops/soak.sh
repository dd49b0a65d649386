#!/usr/bin/env bash
# Soak benchmark (not a test): mixed load on the release build for DURATION seconds,
# with about 5% upstream errors, and the gateway's resident memory sampled every
# SAMPLE seconds. What it shows: whether RSS levels off (it must) under non-stream and
# streamed chat, embeddings, and failing calls, all at once.
#
# Usage:  bash ops/soak.sh                 (DURATION=600 SAMPLE=10 RATE=800 by default)
#         GATEWAY_BIN=/path/to/switchyard bash ops/soak.sh   (a build to compare)
# Load (oha, fixed rates, 32 connections each): chat at RATE/s, streamed chat at
# RATE/8, embeddings at RATE/8, and chat whose upstream answers 500 at RATE/20 (about
# 5% of all requests; each fails over to nothing and is recorded as a 502).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-600}"
SAMPLE="${SAMPLE:-10}"
RATE="${RATE:-800}"
OUT="${OUT:-target/bench}"
mkdir -p "$OUT"

command -v oha >/dev/null 2>&1 || cargo install oha --locked
if [ -n "${GATEWAY_BIN:-}" ]; then
  BIN="$GATEWAY_BIN"
else
  cargo build --release --locked --bin switchyard
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/switchyard"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

MOCK_PORT=$(free_port); GW_PORT=$(free_port)
"$BIN" mock-upstream --addr "127.0.0.1:$MOCK_PORT" --workers 1 >/dev/null &
PIDS+=($!)
cat >"$WORK/gw.toml" <<TOML
pricing_file = "$PWD/config/pricing.toml"
[server]
http_addr = "127.0.0.1:$GW_PORT"
data_dir = "$WORK/data"

[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
concurrency = 256
queue_size = 4096
forward_headers = ["x-mock-status"]
breaker_failures = 0

[[models]]
alias = "chat"
targets = [{ provider = "mock", model = "gpt-4o-mini" }]

[[models]]
alias = "embed"
targets = [{ provider = "mock", model = "text-embedding-3-small" }]

[[keys]]
id = "soak"
key = "sk-soak-key-0001"
models = ["*"]
rpm = 100000000
tpm = 100000000000
TOML
RUST_LOG=warn "$BIN" serve --config "$WORK/gw.toml" >"$WORK/gw.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
wait_port "$MOCK_PORT"
wait_port "$GW_PORT"

URL="http://127.0.0.1:$GW_PORT"
AUTH="authorization: Bearer sk-soak-key-0001"
chat='{"model":"chat","messages":[{"role":"user","content":"soak the gateway for a while"}]}'
stream='{"model":"chat","stream":true,"messages":[{"role":"user","content":"soak the stream for a while"}]}'
embed='{"model":"embed","input":["soak one","soak two"]}'
run() { # rate, path, body, extra header
  local args=(-z "${DURATION}s" -c 32 -q "$1" --no-tui -m POST -H "$AUTH" -H "content-type: application/json" -d "$3")
  [ -n "${4:-}" ] && args+=(-H "$4")
  oha "${args[@]}" "$URL$2" >"$WORK/oha-$5.txt" 2>&1 &
  PIDS+=($!)
}
run "$RATE" /v1/chat/completions "$chat" "" chat
run $((RATE / 8)) /v1/chat/completions "$stream" "" stream
run $((RATE / 8)) /v1/embeddings "$embed" "" embed
run $((RATE / 20)) /v1/chat/completions "$chat" "x-mock-status: 500" errors

rss() { awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status"; }
echo "| t (s) | gateway RSS (MiB) |"
echo "|---:|---:|"
START=$(date +%s)
while :; do
  NOW=$(($(date +%s) - START))
  printf '| %d | %.1f |\n' "$NOW" "$(echo "$(rss) / 1024" | bc -l)"
  [ "$NOW" -ge "$DURATION" ] && break
  sleep "$SAMPLE"
done
sleep 2
echo
for f in chat stream embed errors; do
  printf '%s: ' "$f"
  grep -E "Requests/sec|Success rate" "$WORK/oha-$f.txt" | tr -s ' ' | tr '\n' ' '
  grep -A8 "Status code distribution" "$WORK/oha-$f.txt" | grep -E "\[[0-9]+\]" | tr -s ' ' | tr '\n' ' '
  echo
done
