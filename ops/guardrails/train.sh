#!/usr/bin/env bash
# Retrains the shipped guardrail classifiers from the committed data (reproducible:
# same data, same seed, same weights) and prints their held-out figures.
#   bash ops/guardrails/train.sh            # retrain from ops/guardrails/data
#   MIRROR=/path bash ops/guardrails/train.sh --assemble   # rebuild the data first
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ "${1:-}" == "--assemble" ]]; then
  python3 ops/guardrails/assemble.py --mirror "${MIRROR:-/work/.mirror}" --out ops/guardrails/data
fi
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/switchyard"
"$bin" guardrails train --task injection --data ops/guardrails/data/injection.jsonl.gz --out actors/assets/injection.model
"$bin" guardrails train --task moderation --unbalanced --data ops/guardrails/data/moderation.jsonl.gz --out actors/assets/moderation.model
echo "rebuild to ship the new weights: cargo build --release"
