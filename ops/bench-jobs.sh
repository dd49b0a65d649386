#!/usr/bin/env bash
# Durable-jobs benchmark on loopback: a temp nats-server (JetStream), the mock upstream,
# and the gateway (release build) serving jobs; `benches/jobs_load.rs` publishes jobs
# and times publish -> result. Scenarios:
#   chat jobs/s with the mock at 0 ms and at 50 ms; upstream calls per embedding job with
#   gateway-side batching on and off; p50/p99 of high-priority jobs while a 10,000-job
#   low-priority backlog drains; one Batch API batch of 5,000 requests, create to completed;
#   and the ceiling: the same chat jobs served with only their NATS work (jobs_load
#   --ceiling: result lookup, two confirmed publishes, double ack) and no gateway, with
#   the chat jobs' share of it and the gateway's CPU per job.
# NATS_SERVER=path picks the server (default: Debian's on the PATH, else the test venv's
# newer one, which ops/test.sh installs).
# Usage: ops/bench-jobs.sh   (writes target/bench/jobs.json)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-target/bench}"
mkdir -p "$OUT"
N_CHAT="${N_CHAT:-5000}"
N_SLOW="${N_SLOW:-3000}"
N_EMBED="${N_EMBED:-2000}"
N_BACKLOG="${N_BACKLOG:-10000}"
N_BATCH="${N_BATCH:-5000}"

NATS_SERVER="${NATS_SERVER:-$(command -v nats-server || echo "$PWD/target/test-venv/bin/nats-server")}"
[ -x "$NATS_SERVER" ] || { echo "nats-server missing: run ops/test.sh once (it installs it)" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked --bin switchyard --example jobs_load
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/switchyard"
LOAD="$PWD/target/release/examples/jobs_load"

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

NATS_PORT=$(free_port); MOCK_PORT=$(free_port)
"$NATS_SERVER" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" >/dev/null 2>&1 &
PIDS+=($!)
"$BIN" mock-upstream --addr "127.0.0.1:$MOCK_PORT" --workers 1 >/dev/null &
PIDS+=($!)
wait_port "$NATS_PORT"; wait_port "$MOCK_PORT"

# gateway <name> <prefix> <embed_batch_max_inputs>
gateway() {
  local port; port=$(free_port)
  eval "PORT_$1=$port"
  cat > "$WORK/$1.toml" <<TOML
pricing_file = "$PWD/config/pricing.toml"
[server]
http_addr = "127.0.0.1:$port"
data_dir = "$WORK/$1-data"
[nats]
url = "nats://127.0.0.1:$NATS_PORT"
prefix = "$2"
job_concurrency = 128
embed_batch_max_inputs = $3
embed_batch_window_ms = 5
request_reply = false
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
concurrency = 256
queue_size = 4096
jobs_share = 0.5
forward_headers = ["x-mock-latency-ms"]
[[models]]
alias = "fast"
targets = [{ provider = "mock", model = "gpt-4o-mini" }]
[[models]]
alias = "embed"
targets = [{ provider = "mock", model = "text-embedding-3-small" }]
[[keys]]
id = "bench"
key = "sk-bench-key-0001"
models = ["*"]
[cache]
enabled = false
TOML
  RUST_LOG=warn "$BIN" serve --config "$WORK/$1.toml" >/dev/null 2>"$WORK/$1.log" &
  PIDS+=($!)
  eval "PID_$1=$!"
  wait_port "$port"
  # wait until its streams exist
  sleep 1
}
mock_requests() { curl -s "http://127.0.0.1:$MOCK_PORT/mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }
load() { "$LOAD" --nats "nats://127.0.0.1:$NATS_PORT" --key sk-bench-key-0001 "$@"; }

gateway on bench 64
gateway off benchoff 1
# the ceiling's streams and lane consumers, made by a gateway that then stops serving
gateway ceil ceil 64
kill "$PID_ceil"; wait "$PID_ceil" 2>/dev/null || true

# CPU seconds a process has used (user + system)
cpu_secs() { python3 -c "import os,sys; f=open(f'/proc/{sys.argv[1]}/stat').read().rsplit(')',1)[1].split(); print((int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK'))" "$1"; }

echo "ceiling: the same jobs with only their NATS work, no gateway ($N_CHAT jobs)" >&2
CEILING=$(load --prefix ceil --count "$N_CHAT" --latency-ms 0 --ceiling)
echo "chat, mock 0 ms ($N_CHAT jobs)" >&2
CPU0=$(cpu_secs "$PID_on")
CHAT0=$(load --prefix bench --count "$N_CHAT" --latency-ms 0)
CPU1=$(cpu_secs "$PID_on")
GW_CPU_US=$(python3 -c "print(round(($CPU1 - $CPU0) * 1e6 / $N_CHAT, 1))")
echo "chat, mock 50 ms ($N_SLOW jobs)" >&2
CHAT50=$(load --prefix bench --count "$N_SLOW" --latency-ms 50)
echo "embeddings, batching on ($N_EMBED jobs)" >&2
before=$(mock_requests)
EMB_ON=$(load --prefix bench --count "$N_EMBED" --endpoint embeddings --model embed)
CALLS_ON=$(( $(mock_requests) - before ))
echo "embeddings, batching off ($N_EMBED jobs)" >&2
before=$(mock_requests)
EMB_OFF=$(load --prefix benchoff --count "$N_EMBED" --endpoint embeddings --model embed)
CALLS_OFF=$(( $(mock_requests) - before ))
echo "high-priority probes while $N_BACKLOG low jobs drain (mock 50 ms)" >&2
PRIO=$(load --prefix bench --count "$N_BACKLOG" --lane low --latency-ms 50 --probe-lane high --probe-count 100 --probe-rate 20)

echo "Batch API: one batch of $N_BATCH chat requests (low lane)" >&2
python3 - "$WORK/batch.jsonl" "$N_BATCH" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "fast", "messages": [{"role": "user", "content": f"batch item {i}"}]}}) + "\n")
PY
GW="http://127.0.0.1:$PORT_on"
AUTH="authorization: Bearer sk-bench-key-0001"
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
FILE_ID=$(curl -s "$GW/v1/files" -H "$AUTH" -F purpose=batch -F file=@"$WORK/batch.jsonl" | field id)
T0=$(date +%s.%N)
BATCH_ID=$(curl -s "$GW/v1/batches" -H "$AUTH" -H "content-type: application/json" \
  -d "{\"input_file_id\": \"$FILE_ID\", \"endpoint\": \"/v1/chat/completions\", \"completion_window\": \"24h\"}" | field id)
for _ in $(seq 1 1500); do
  [ "$(curl -s "$GW/v1/batches/$BATCH_ID" -H "$AUTH" | field status)" = completed ] && break
  sleep 0.2
done
T1=$(date +%s.%N)
BATCH_DONE=$(curl -s "$GW/v1/batches/$BATCH_ID" -H "$AUTH" | python3 -c 'import json,sys; print(json.load(sys.stdin)["request_counts"]["completed"])')
BATCH_SECS=$(python3 -c "print($T1 - $T0)")

python3 - "$OUT/jobs.json" <<PY
import json, sys
chat0, chat50, on, off, prio, ceiling = (json.loads(s) for s in ('''$CHAT0''', '''$CHAT50''', '''$EMB_ON''', '''$EMB_OFF''', '''$PRIO''', '''$CEILING'''))
gw_cpu_us = $GW_CPU_US
calls_on, calls_off = $CALLS_ON, $CALLS_OFF
batch_n, batch_done, batch_secs = $N_BATCH, $BATCH_DONE, $BATCH_SECS
out = {"chat_0ms": chat0, "chat_50ms": chat50, "embeddings_batching_on": dict(on, upstream_calls=calls_on),
       "embeddings_batching_off": dict(off, upstream_calls=calls_off), "priority": prio,
       "batch_api": {"requests": batch_n, "completed": batch_done, "seconds": batch_secs},
       "ceiling": ceiling, "chat_0ms_of_ceiling": chat0["jobs_per_sec"] / ceiling["jobs_per_sec"],
       "gateway_cpu_us_per_job": gw_cpu_us}
json.dump(out, open(sys.argv[1], "w"), indent=2)
def row(name, r): print(f"{name:<34} {r['jobs_per_sec']:>9.0f} jobs/s  p50 {r['latency']['p50_ms']:>8.1f} ms  p99 {r['latency']['p99_ms']:>8.1f} ms  ({r['completed']}/{r['jobs']} ok)")
row("ceiling (NATS work only, no gateway)", ceiling)
row("chat jobs, mock 0 ms", chat0)
print(f"chat jobs at {chat0['jobs_per_sec'] / ceiling['jobs_per_sec']:.2f} of the ceiling; the gateway spent {gw_cpu_us:.0f} µs of CPU per job")
row("chat jobs, mock 50 ms", chat50)
row("embedding jobs, batching on", on)
row("embedding jobs, batching off", off)
print(f"upstream calls per embedding job: batching on {calls_on/on['jobs']:.3f}, off {calls_off/off['jobs']:.3f}")
row(f"low backlog ({prio['jobs']-prio['probe_latency']['n']} jobs, 50 ms)", prio)
p = prio["probe_latency"]
print(f"high-priority probes during the drain: n={p['n']} p50 {p['p50_ms']:.1f} ms  p99 {p['p99_ms']:.1f} ms  max {p['max_ms']:.1f} ms")
print(f"Batch API: {batch_done}/{batch_n} requests completed in {batch_secs:.1f} s ({batch_done / batch_secs:.0f} requests/s, create to completed)")
PY
