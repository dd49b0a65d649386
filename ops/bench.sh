#!/usr/bin/env bash
# Load benchmark on loopback, bounded in time. Starts `switchyard mock-upstream`, the
# gateway (release build; auth, rate limits and the usage ledger on, cache off) and
# nginx as a plain reverse proxy, and drives each with oha:
#   (a) straight to the mock, (b) through the gateway, (c) through nginx, and
#   (d) through the floor: actix-web + reqwest with nothing in between
#   (benches/passthrough.rs, same worker count; FLOOR=0 leaves it out), what the two
#   HTTP stacks the gateway is built on add before any of its own work.
# One run covers three scenarios (SCENARIOS="plain stream slow" by default):
#   plain   non-stream chat: max requests/s at $CONNS connections, and the latency each
#           proxy adds (p10/p50/p90/p99 less the mock's) at a fixed $RATE requests/s;
#   stream  streamed chat (SSE, 20 chunks): the same at $CONNS connections and a fixed
#           $STREAM_RATE streams/s (the floor is left out: it buffers answers);
#   slow    an upstream (a second mock) that answers in $SLOW_MS ms, max requests/s at
#           $SLOW_CONNS connections.
# In each, the paths take turns $ROUNDS times and each path's figure is its median; CPU
# time per request (from /proc) for nginx, the floor and the gateway; the gateway's peak
# RSS per scenario (its high-water mark is reset between them) and over the whole run.
# Usage: ops/bench.sh   (DURATION=10s RATE=2000 STREAM_RATE=500 CONNS=64 SLOW_MS=50
#                        SLOW_CONNS=256 ROUNDS=3 by default)
#        TARGETS=3 STRATEGY=latency ops/bench.sh
#   TARGETS=N puts N providers (all on the one mock) behind the alias, chosen by
#   STRATEGY (weighted, latency, cost or failover; default weighted): what routing
#   over several targets costs. nginx stays a single-upstream proxy.
#        GUARDRAILS=1 ops/bench.sh
#   applies a guardrail set (PII with every entity, prompt-injection scoring and
#   moderation, both directions) to the alias.
#        WORKERS=1 ops/bench.sh
#   the gateway's HTTP worker threads (default: the CPU count, as the gateway's own
#   default; with 1 or 2 the first worker also runs the engine's actors, with more they
#   get a thread of their own).
#        INSTRUCTIONS=1 ops/bench.sh
#   instead of the load runs: the gateway under valgrind's callgrind, $REQUESTS requests
#   (default 2000, 8 connections) after a warm-up, and the instructions it executed per
#   request, in all and by function. Instructions are counted, not timed, so the figure
#   is the same run after run on a busy or a quiet machine: the one to compare commits
#   by when the VM's latency noise (p99s moving by milliseconds) hides a change.
#   (Counts are valgrind's: its CPU has no SHA-NI, and a `rep stos` counts once per
#   iteration, so memset and SHA-256 weigh more than on the real CPU.)
#        SCENARIOS=stream ops/bench.sh   (or STREAM=1)
#   only the streamed runs (any subset of "plain stream slow").
#        GATEWAY_BIN=/path/to/switchyard ops/bench.sh
#   runs that binary as the gateway instead of building this tree's (to compare two
#   commits in one session: build the other one's release binary first).
#        PROMPTS=1 ops/bench.sh
#   the gateway's requests name a prompt (two Jinja messages, three variables) that an
#   experiment splits 50/50 between two versions, and a prompt policy adds system text
#   with today's date: what prompt management costs per request (the other paths get
#   the same body and ignore the `prompt` field).
#        BODY='{...}' ops/bench.sh
#   another request body, the same for every path.
#        SEMANTIC=1 ops/bench.sh
#   the semantic cache on for the alias, embedding through the mock (one embeddings
#   call per request): the same body every time, so after the first request every one
#   is a semantic hit (hit ratio 1); the provider path is the miss's. Compare with a
#   plain run: what a hit costs the gateway against a call.
#        NATS=1 ops/bench.sh
#   also starts a nats-server (JetStream, temp store, free port) and gives the gateway
#   a [nats] section: the key's rpm/tpm limits are then shared through key-value.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
RATE="${RATE:-2000}"
CONNS="${CONNS:-64}"
ROUNDS="${ROUNDS:-3}"
[ "$ROUNDS" -ge 1 ] 2>/dev/null || { echo "ROUNDS must be a whole number, at least 1" >&2; exit 1; }
TARGETS="${TARGETS:-1}"
STRATEGY="${STRATEGY:-weighted}"
NATS="${NATS:-0}"
export WORKERS="${WORKERS:-$(nproc)}"
GUARDRAILS="${GUARDRAILS:-0}"
PROMPTS="${PROMPTS:-0}"
SEMANTIC="${SEMANTIC:-0}"
SEMANTIC_LINE=""
SEMANTIC_SECTION=""
if [ "$SEMANTIC" = 1 ]; then
  SEMANTIC_LINE='semantic_cache = true'
  SEMANTIC_SECTION='[cache.semantic]
embeddings = "embed"
embed_timeout_ms = 1000'
fi
INSTRUCTIONS="${INSTRUCTIONS:-0}"
STREAM="${STREAM:-0}"
FLOOR="${FLOOR:-1}"
if [ "$INSTRUCTIONS" = 1 ]; then FLOOR=0; fi
# which runs: plain (non-stream chat, $CONNS connections), stream (SSE, $CONNS
# connections, fixed rate $STREAM_RATE/s) and slow (an upstream that answers in $SLOW_MS
# ms, $SLOW_CONNS connections, max throughput only); STREAM=1 is SCENARIOS=stream
SCENARIOS="${SCENARIOS:-plain stream slow}"
if [ "$STREAM" = 1 ]; then SCENARIOS=stream; fi
STREAM_RATE="${STREAM_RATE:-500}"
SLOW_MS="${SLOW_MS:-50}"
SLOW_CONNS="${SLOW_CONNS:-256}"
has_scenario() { case " $SCENARIOS " in *" $1 "*) return 0;; *) return 1;; esac; }
REQUESTS="${REQUESTS:-2000}"
GUARD_LINE=""
GUARD_SECTION=""
if [ "$GUARDRAILS" = 1 ]; then
  GUARD_LINE='guardrails = ["all"]'
  GUARD_SECTION='[[guardrails]]
name = "all"
pii = { email = "pseudonymize", phone = "redact", card = "block", iban = "mask", ssn = "mask", ip = "log", secret = "block" }
injection = { threshold = 0.5 }
moderation = { threshold = 0.5 }'
fi
PROMPT_SECTION=""
if [ "$PROMPTS" = 1 ]; then
  PROMPT_SECTION='[[prompts]]
id = "bench"
[[prompts.versions]]
messages = [{ role = "system", content = "You are {{ company }}'"'"'s assistant. Answer in {{ language }}." },
            { role = "user", content = "Say hello to {{ who }}." }]
variables = { company = "string", language = "string", who = "string" }
[[prompts.versions]]
messages = [{ role = "system", content = "You work for {{ company }}; reply in {{ language }}, briefly." },
            { role = "user", content = "Greet {{ who }}." }]
variables = { company = "string", language = "string", who = "string" }
[[experiments]]
id = "bench-ab"
prompt = "bench"
sticky = "request"
variants = [{ name = "a", weight = 1, prompt_version = 1 }, { name = "b", weight = 1, prompt_version = 2 }]
[[prompt_policies]]
name = "date"
prepend = "Today is {{ date }}."'
fi
OUT="${OUT:-target/bench}"
mkdir -p "$OUT"

command -v oha >/dev/null 2>&1 || cargo install oha --locked
if [ "$INSTRUCTIONS" = 1 ] && ! command -v valgrind >/dev/null 2>&1; then
  apt-get install -y -q valgrind >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q valgrind >/dev/null)
fi
if ! command -v nginx >/dev/null 2>&1; then
  apt-get install -y -q nginx-light >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q nginx-light >/dev/null)
fi
if [ -n "${GATEWAY_BIN:-}" ]; then
  BIN="$GATEWAY_BIN"   # another build to compare (its own release binary), not rebuilt
else
  cargo build --release --locked --bin switchyard
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/switchyard"
fi
if [ "$FLOOR" = 1 ]; then
  cargo build --release --locked --example passthrough
  FLOOR_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/examples/passthrough"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

MOCK_PORT=$(free_port); GW_PORT=$(free_port); NGINX_PORT=$(free_port); FLOOR_PORT=$(free_port)
SLOW_MOCK_PORT=$(free_port); NGINX_SLOW_PORT=$(free_port); FLOOR_SLOW_PORT=$(free_port)
NATS_SECTION=""
if [ "$NATS" = 1 ]; then
  NATS_PORT=$(free_port)
  command -v nats-server >/dev/null 2>&1 || { echo "NATS=1 needs nats-server (bash ops/test.sh installs it)" >&2; exit 1; }
  nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_port "$NATS_PORT"
  NATS_SECTION="[nats]
url = \"nats://127.0.0.1:$NATS_PORT\"
prefix = \"bench\"
jobs = false
request_reply = false"
fi

"$BIN" mock-upstream --addr "127.0.0.1:$MOCK_PORT" --workers 1 >/dev/null &
PIDS+=($!)
if has_scenario slow; then
  "$BIN" mock-upstream --addr "127.0.0.1:$SLOW_MOCK_PORT" --latency-ms "$SLOW_MS" --workers 1 >/dev/null &
  PIDS+=($!)
fi

{
cat <<TOML
pricing_file = "$PWD/config/pricing.toml"
[server]
http_addr = "127.0.0.1:$GW_PORT"
data_dir = "$WORK/data"
workers = $WORKERS
TOML
TARGET_LIST=""
MODELS=(gpt-4o-mini gpt-4o gpt-4.1-mini)
for i in $(seq 1 "$TARGETS"); do
  cat <<TOML
[[providers]]
name = "mock$i"
kind = "openai-compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
concurrency = 512
queue_size = 4096
TOML
  TARGET_LIST="$TARGET_LIST{ provider = \"mock$i\", model = \"${MODELS[$(( (i - 1) % 3 ))]}\", weight = $i },"
done
cat <<TOML
[[models]]
alias = "fast"
strategy = "$STRATEGY"
targets = [${TARGET_LIST%,}]
$GUARD_LINE
$SEMANTIC_LINE
[[providers]]
name = "slowmock"
kind = "openai-compatible"
base_url = "http://127.0.0.1:$SLOW_MOCK_PORT/v1"
concurrency = 1024
queue_size = 4096
[[models]]
alias = "slow"
targets = [{ provider = "slowmock", model = "gpt-4o-mini" }]
[[models]]
alias = "embed"
targets = [{ provider = "mock1", model = "text-embedding-3-small" }]
[[keys]]
id = "bench"
key = "sk-bench-key-0001"
models = ["fast", "slow"]
rpm = 100000000
tpm = 100000000000
[cache]
enabled = false
$SEMANTIC_SECTION
$NATS_SECTION
$GUARD_SECTION
$PROMPT_SECTION
TOML
} > "$WORK/gw.toml"
BODY_OVERRIDE="${BODY:-}"
BODY='{"model":"fast","max_tokens":64,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
if [ "$PROMPTS" = 1 ]; then
  BODY='{"model":"fast","max_tokens":64,"messages":[{"role":"user","content":"Say hello to the benchmark."}],"prompt":{"id":"bench","variables":{"company":"ACME","language":"English","who":"the benchmark"}}}'
fi
STREAM_BODY='{"model":"fast","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Say hello to the benchmark, word by word, in one stream."}]}'
SLOW_BODY='{"model":"slow","max_tokens":64,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
if [ "$STREAM" = 1 ] && [ "$INSTRUCTIONS" = 1 ]; then BODY="$STREAM_BODY"; fi
# BODY='{...}' ops/bench.sh: another request body (the same for every path)
if [ -n "$BODY_OVERRIDE" ]; then BODY="$BODY_OVERRIDE"; fi
if [ "$INSTRUCTIONS" = 1 ]; then
  # the allocator option set here, so that `serve` does not start itself again (valgrind
  # would not follow it)
  MIMALLOC_ARENA_EAGER_COMMIT=0 RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
    "$BIN" serve --config "$WORK/gw.toml" \
    >/dev/null 2>"$WORK/gw.log" &
  GW_PID=$!
  PIDS+=($GW_PID)
  wait_port "$MOCK_PORT"
  for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$GW_PORT") 2>/dev/null && break; sleep 0.1; done
  wait_port "$GW_PORT"
  drive() { oha --no-tui -n "$1" -c 8 -m POST -H "authorization: Bearer sk-bench-key-0001" \
    -H "content-type: application/json" -d "$BODY" "http://127.0.0.1:$GW_PORT/v1/chat/completions" \
    --output-format json > "$OUT/instructions_$2.json"; }
  drive 1000 warmup
  callgrind_control -z "$GW_PID" >/dev/null
  drive "$REQUESTS" run
  callgrind_control -d "$GW_PID" >/dev/null
  sleep 1
  DUMP=$(ls "$WORK"/cg.out.* | head -1)
  python3 - "$OUT/instructions_run.json" "$REQUESTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = sum(v for k, v in r.get("statusCodeDistribution", {}).items() if k.startswith("2"))
if ok != int(sys.argv[2]):
    sys.exit(f"only {ok} of {sys.argv[2]} requests succeeded")
PY
  cp "$DUMP" "$OUT/callgrind.out"   # for callgrind_annotate --tree=calling, kcachegrind
  callgrind_annotate --threshold=100 --auto=no "$DUMP" > "$OUT/instructions_self.txt"
  callgrind_annotate --threshold=100 --auto=no --inclusive=yes "$DUMP" > "$OUT/instructions_inclusive.txt"
  python3 - "$OUT" "$REQUESTS" "$TARGETS" "$STRATEGY" <<'PY'
import os, re, sys
out, n, targets, strategy = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def rows(name):
    for line in open(os.path.join(out, name)):
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(?:\*\s+)?(\S.*)$", line)
        if m:
            yield int(m.group(1).replace(",", "")), m.group(2)
def short(f):
    f = re.sub(r"\s\[[^\]]*\]$", "", f)
    return f.split(":", 1)[1] if ":" in f else f
total = next(c for c, f in rows("instructions_self.txt") if f.startswith("PROGRAM TOTALS"))
print(f"gateway instructions per request (callgrind, {n} requests, 8 connections, {targets} target(s), "
      f"strategy {strategy}, gateway workers {os.environ.get('WORKERS')}, "
      f"guardrails {os.environ.get('GUARDRAILS', '0') == '1'}): {total / n:,.0f}")
print("\nmost instructions per request, the function itself:")
# (thread entry frames are listed with everything below them; they are not the hot spots)
for c, f in [r for r in rows("instructions_self.txt") if not r[1].startswith("PROGRAM") and r[0] < total * 0.9][:12]:
    print(f"  {c / n:>9,.0f}  {short(f)[:110]}")
print("\nthe gateway's own functions, with what they call:")
seen = set()
for c, f in rows("instructions_inclusive.txt"):
    if "/work/" in f or "switchyard" in f.split(":", 1)[-1].split("::")[0]:
        name = short(f)
        if name.startswith("switchyard") and name not in seen:
            seen.add(name)
            print(f"  {c / n:>9,.0f}  {name[:110]}")
        if len(seen) >= 15:
            break
PY
  exit 0
fi
RUST_LOG=warn "$BIN" serve --config "$WORK/gw.toml" >/dev/null 2>"$WORK/gw.log" &
GW_PID=$!
PIDS+=($GW_PID)

SLOW_SERVER=""
if has_scenario slow; then
  SLOW_SERVER="upstream slowmock { server 127.0.0.1:$SLOW_MOCK_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_SLOW_PORT;
    location / { proxy_pass http://slowmock; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }
  }"
fi
cat > "$WORK/nginx.conf" <<NGINX
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-body;
  proxy_temp_path $WORK/nginx-proxy;
  upstream mock { server 127.0.0.1:$MOCK_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
  $SLOW_SERVER
}
NGINX
nginx -c "$WORK/nginx.conf" -p "$WORK"
if [ "$FLOOR" = 1 ]; then
  "$FLOOR_BIN" "127.0.0.1:$FLOOR_PORT" "http://127.0.0.1:$MOCK_PORT" "$WORKERS" >/dev/null 2>&1 &
  FLOOR_PID=$!
  PIDS+=($FLOOR_PID)
  wait_port "$FLOOR_PORT"
  if has_scenario slow; then
    "$FLOOR_BIN" "127.0.0.1:$FLOOR_SLOW_PORT" "http://127.0.0.1:$SLOW_MOCK_PORT" "$WORKERS" >/dev/null 2>&1 &
    FLOOR_SLOW_PID=$!
    PIDS+=($FLOOR_SLOW_PID)
    wait_port "$FLOOR_SLOW_PORT"
  fi
fi
# a scenario's paths: the floor buffers answers, so it is left out of the streamed one
paths_of() { local p="mock gateway nginx"; if [ "$FLOOR" = 1 ] && [ "$1" != stream ]; then p="$p floor"; fi; echo "$p"; }
url_of() { # path scenario
  if [ "$2" = slow ]; then
    case $1 in mock) echo "http://127.0.0.1:$SLOW_MOCK_PORT";; gateway) echo "http://127.0.0.1:$GW_PORT";;
      nginx) echo "http://127.0.0.1:$NGINX_SLOW_PORT";; floor) echo "http://127.0.0.1:$FLOOR_SLOW_PORT";; esac
  else
    case $1 in mock) echo "http://127.0.0.1:$MOCK_PORT";; gateway) echo "http://127.0.0.1:$GW_PORT";;
      nginx) echo "http://127.0.0.1:$NGINX_PORT";; floor) echo "http://127.0.0.1:$FLOOR_PORT";; esac
  fi; }
body_of() { case $1 in plain) echo "$BODY";; stream) echo "$STREAM_BODY";; slow) echo "$SLOW_BODY";; esac; }
conns_of() { case $1 in slow) echo "$SLOW_CONNS";; *) echo "$CONNS";; esac; }
rate_of() { case $1 in plain) echo "$RATE";; stream) echo "$STREAM_RATE";; slow) echo 0;; esac; }

wait_port "$MOCK_PORT"; wait_port "$GW_PORT"; wait_port "$NGINX_PORT"
if has_scenario slow; then wait_port "$SLOW_MOCK_PORT"; wait_port "$NGINX_SLOW_PORT"; fi
if [ "$NATS" = 1 ]; then
  for _ in $(seq 1 100); do
    curl -s "http://127.0.0.1:$GW_PORT/readyz" | grep -q '"limits":"shared"' && break
    sleep 0.1
  done
  curl -s "http://127.0.0.1:$GW_PORT/readyz" | grep -q '"limits":"shared"' || { echo "limits never became shared" >&2; exit 1; }
fi

run_oha() { # file url body connections extra-args...
  local name=$1 url=$2 body=$3 conns=$4; shift 4
  oha --no-tui --output-format json -z "$DURATION" -c "$conns" -m POST \
    -H "authorization: Bearer sk-bench-key-0001" -H "content-type: application/json" \
    -d "$body" "$@" "$url/v1/chat/completions" > "$OUT/$name.json"
}
# CPU time (user + system, in clock ticks) of a proxy's processes: the gateway, the
# floor, or nginx's master and workers
proxy_pids() { case $1 in gateway) echo "$GW_PID";; floor) echo "$FLOOR_PID ${FLOOR_SLOW_PID:-}";;
  nginx) local m; m=$(cat "$WORK/nginx.pid"); echo "$m" $(pgrep -P "$m");; esac; }
cpu_ticks() { local t=0 p; for p in $(proxy_pids "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
TICK=$(getconf CLK_TCK)
PEAKS=""

for sc in $SCENARIOS; do
  PATHS=$(paths_of "$sc"); B=$(body_of "$sc"); C=$(conns_of "$sc"); Q=$(rate_of "$sc")
  # the gateway's peak RSS of this scenario alone: the high-water mark is reset first
  echo 5 > "/proc/$GW_PID/clear_refs" 2>/dev/null || true
  for p in $PATHS; do   # warm up every path
    oha --no-tui -n 2000 -c 16 -m POST -H "authorization: Bearer sk-bench-key-0001" \
      -H "content-type: application/json" -d "$B" "$(url_of "$p" "$sc")/v1/chat/completions" >/dev/null
  done
  # the max-throughput runs take turns, ROUNDS times: the VM's speed drifts over a
  # minute (nginx alone moved between 19k and 27k req/s in consecutive runs), so runs
  # side by side are compared and each path's figure is its median; each proxy's CPU
  # time is summed over its rounds
  declare -A TICKS=([gateway]=0 [nginx]=0 [floor]=0)
  for r in $(seq 1 "$ROUNDS"); do
    for p in $PATHS; do
      T0=0; [ "$p" != mock ] && T0=$(cpu_ticks "$p")
      run_oha "${sc}_${p}_max_$r" "$(url_of "$p" "$sc")" "$B" "$C"
      [ "$p" != mock ] && TICKS[$p]=$((TICKS[$p] + $(cpu_ticks "$p") - T0))
    done
  done
  # the fixed-rate runs take turns, ROUNDS times: a p99 of one run moves with the VM's
  # scheduling hiccups, so each path's figure is its median over the rounds
  if [ "$Q" != 0 ]; then
    for r in $(seq 1 "$ROUNDS"); do
      for p in $PATHS; do
        run_oha "${sc}_${p}_rate_$r" "$(url_of "$p" "$sc")" "$B" "$C" -q "$Q" --latency-correction
      done
    done
  fi
  RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")
  echo "{\"paths\": \"$PATHS\", \"conns\": $C, \"rate\": $Q, \"rss_kb\": $RSS_KB, \"tick\": $TICK, \"ticks\": {\"gateway\": ${TICKS[gateway]}, \"nginx\": ${TICKS[nginx]}, \"floor\": ${TICKS[floor]}}}" > "$OUT/${sc}_meta.json"
  unset TICKS
done

python3 - "$OUT" "$DURATION" "$TARGETS" "$STRATEGY" "$ROUNDS" "$SCENARIOS" "$SLOW_MS" <<'PY'
import json, sys, os, statistics
out, duration, targets, strategy, rounds, scenarios, slow_ms = sys.argv[1:]
rounds = int(rounds)
med = statistics.median
def load(n):
    with open(os.path.join(out, n + ".json")) as f:
        return json.load(f)
def ok(r):
    return sum(v for k, v in r.get("statusCodeDistribution", {}).items() if k.startswith("2"))
def total(r):
    return sum(r.get("statusCodeDistribution", {}).values())
def summary(r):
    p = r["latencyPercentiles"]
    return {"rps": r["summary"]["requestsPerSec"], "p10_ms": p["p10"] * 1e3, "p50_ms": p["p50"] * 1e3,
            "p90_ms": p["p90"] * 1e3, "p99_ms": p["p99"] * 1e3, "ok": ok(r), "total": total(r)}
labels = {"mock": "mock-upstream direct", "gateway": "switchyard gateway", "nginx": "nginx proxy",
          "floor": "floor: actix-web + reqwest, nothing between"}
titles = {"plain": "non-stream chat", "stream": "streamed chat (SSE, 20 chunks)",
          "slow": f"non-stream chat, upstream answering in {slow_ms} ms"}
print(f"duration {duration} per run, {rounds} rounds (medians), {targets} target(s), strategy {strategy}, "
      f"gateway workers {os.environ.get('WORKERS')}, shared limits {os.environ.get('NATS', '0') == '1'}, "
      f"guardrails {os.environ.get('GUARDRAILS', '0') == '1'}, prompts {os.environ.get('PROMPTS', '0') == '1'}, "
      f"semantic cache {os.environ.get('SEMANTIC', '0') == '1'}")
everything = {}
for sc in scenarios.split():
    meta = load(f"{sc}_meta")
    paths, rate = meta["paths"].split(), meta["rate"]
    proxies = [p for p in paths if p != "mock"]
    res = {"connections": meta["conns"], "rate": rate}
    for path in paths:
        runs = [summary(load(f"{sc}_{path}_max_{i}")) for i in range(1, rounds + 1)]
        res[path + "_max"] = {"rps": med(x["rps"] for x in runs), "ok": sum(x["ok"] for x in runs),
                              "total": sum(x["total"] for x in runs), "rounds": runs}
        if rate:
            runs = [summary(load(f"{sc}_{path}_rate_{i}")) for i in range(1, rounds + 1)]
            res[path + "_rate"] = {q: med(x[q] for x in runs) for q in ["rps", "p10_ms", "p50_ms", "p90_ms", "p99_ms"]}
            res[path + "_rate"].update(ok=sum(x["ok"] for x in runs), total=sum(x["total"] for x in runs), rounds=runs)
    for p in proxies:
        n = res[p + "_max"]["ok"]
        res[p + "_cpu_us_per_request"] = meta["ticks"][p] / meta["tick"] * 1e6 / n if n else None
    res["gateway_peak_rss_mib"] = meta["rss_kb"] / 1024
    res["throughput_ratio_vs_nginx"] = res["gateway_max"]["rps"] / res["nginx_max"]["rps"]
    res["throughput_ratio_per_round"] = [g["rps"] / n["rps"] for g, n in zip(res["gateway_max"]["rounds"], res["nginx_max"]["rounds"])]
    print(f"\n## {titles[sc]}: {meta['conns']} connections" + (f", fixed rate {rate}/s" if rate else ""))
    if rate:
        print(f"| path | max req/s | p50 @{rate}/s (ms) | p99 @{rate}/s (ms) | added p10 / p50 / p90 / p99 (ms) | CPU µs/req at max | non-2xx |")
        print("|---|---:|---:|---:|---:|---:|---:|")
    else:
        print("| path | max req/s | p50 at max (ms) | p99 at max (ms) | CPU µs/req at max | non-2xx |")
        print("|---|---:|---:|---:|---:|---:|")
    added = {}
    for p in paths:
        m = res[p + "_max"]
        bad = m["total"] - m["ok"]
        cpu = res.get(p + "_cpu_us_per_request")
        cpu = f"{cpu:.1f}" if cpu is not None else ""
        if rate:
            q = res[p + "_rate"]
            bad += q["total"] - q["ok"]
            if p != "mock":
                added[p] = {k: q[k + "_ms"] - res["mock_rate"][k + "_ms"] for k in ["p10", "p50", "p90", "p99"]}
            add = "" if p == "mock" else " / ".join(f"{added[p][k]:.3f}" for k in ["p10", "p50", "p90", "p99"])
            print(f"| {labels[p]} | {m['rps']:.0f} | {q['p50_ms']:.3f} | {q['p99_ms']:.3f} | {add} | {cpu} | {bad} |")
        else:
            print(f"| {labels[p]} | {m['rps']:.0f} | {med(x['p50_ms'] for x in m['rounds']):.3f} | "
                  f"{med(x['p99_ms'] for x in m['rounds']):.3f} | {cpu} | {bad} |")
    res["added_ms"] = added
    line = (f"gateway/nginx max req/s {res['throughput_ratio_vs_nginx']:.2f} (rounds "
            + ", ".join(f"{x:.2f}" for x in res["throughput_ratio_per_round"]) + ")")
    if rate and added["nginx"]["p50"] > 0:
        res["added_ratio_vs_nginx"] = {k: added["gateway"][k] / added["nginx"][k] if added["nginx"][k] > 0 else None
                                       for k in ["p10", "p50", "p90", "p99"]}
        line += "; added latency x nginx's: " + ", ".join(
            f"{k} {v:.1f}" if v is not None else f"{k} n/a" for k, v in res["added_ratio_vs_nginx"].items())
    if "floor" in paths:
        line += f"; floor/nginx {res['floor_max']['rps'] / res['nginx_max']['rps']:.2f}"
    print(line)
    print(f"gateway peak RSS in this scenario: {res['gateway_peak_rss_mib']:.1f} MiB")
    everything[sc] = res
peak = max(r["gateway_peak_rss_mib"] for r in everything.values())
everything["gateway_peak_rss_mib"] = peak
print(f"\ngateway peak RSS over the whole run: {peak:.1f} MiB")
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(everything, f, indent=2)
PY
