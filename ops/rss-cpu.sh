#!/usr/bin/env bash
# Resident memory and CPU per request of one gateway build at a fixed rate, or at its
# maximum with RATE=max (not a test): the gateway (two workers, the ledger on) and the
# mock upstream on this machine, `oha -z DUR -q RATE -c C` non-stream chat, CPU from
# /proc/PID/stat (utime+stime) over the run, VmHWM at the end. Extra arguments are
# environment settings for the gateway (allocator options, say); WRAP runs it under a
# tool (`WRAP="heaptrack -o FILE"` with a `--features system-allocator` build: heaptrack
# sees only malloc; the CPU and RSS printed are then the wrapper's, read its own output).
#
# Usage:  bash ops/rss-cpu.sh LABEL [VAR=VALUE ...]   (BIN=..., RATE=2000|max, C=32, DUR=20s)
set -euo pipefail
cd "$(dirname "$0")/.."
LABEL="${1:-gateway}"; shift || true
BIN="${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/switchyard}"
RATE="${RATE:-2000}"; C="${C:-32}"; DUR="${DUR:-20s}"
RATE_ARGS=(-q "$RATE"); [ "$RATE" = max ] && RATE_ARGS=()
command -v oha >/dev/null 2>&1 || cargo install oha --locked
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port); GW_PORT=$(free_port)
W=$(mktemp -d)
"$BIN" mock-upstream --addr "127.0.0.1:$MOCK_PORT" > "$W/mock.log" 2>&1 &
MOCK=$!
cat > "$W/cfg.toml" <<CFG
[server]
http_addr = "127.0.0.1:$GW_PORT"
data_dir = "$W/data"
workers = 2
[[providers]]
name = "up"
kind = "openai-compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "k"
[[models]]
alias = "chat"
targets = [{ provider = "up", model = "m" }]
[[keys]]
id = "k1"
key = "sk-bench"
models = ["*"]
CFG
env "$@" ${WRAP:-} "$BIN" serve --config "$W/cfg.toml" > "$W/gw.log" 2>&1 &
GW=$!
trap 'kill $GW $MOCK 2>/dev/null || true; rm -rf "$W"' EXIT
sleep 2
T0=$(awk '{print $14+$15}' "/proc/$GW/stat")
oha -z "$DUR" "${RATE_ARGS[@]}" -c "$C" --no-tui -m POST -H 'Authorization: Bearer sk-bench' -H 'content-type: application/json' \
  -d '{"model":"chat","messages":[{"role":"user","content":"hello there, how are you today?"}]}' \
  "http://127.0.0.1:$GW_PORT/v1/chat/completions" > "$W/oha.txt" 2>&1
T1=$(awk '{print $14+$15}' "/proc/$GW/stat")
N=$(grep -o "\[200\] [0-9]*" "$W/oha.txt" | awk '{print $2}')
HWM=$(awk '/VmHWM/{print $2}' "/proc/$GW/status")
python3 -c "t=$(getconf CLK_TCK); print(f'$LABEL: {($T1-$T0)/t/${N:-1}*1e6:.1f} us CPU per request over ${N:-0} answered; peak RSS {$HWM/1024:.1f} MiB')"
