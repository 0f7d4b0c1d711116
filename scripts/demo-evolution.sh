#!/usr/bin/env bash
# The data-evolution story, end to end, in a throw-away clone of this repository:
# cut train.csv into CHUNKS chunks, then ingest them one by one; after each new data version
# the pipeline reruns what changed and the gate releases the model only if it beats the released
# one: both bundles score the new eval rows (the released one fetched from the GTO registry).
# Prints the metrics per data version at the end (plots/history/ in the clone has the picture).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CHUNKS=${CHUNKS:-3}
SCALE=${SCALE:-small}
WORK=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/cd4ml-evolution.XXXXXX")}

export DVC_NO_ANALYTICS=1 PATH="$ROOT/.venv/bin:$PATH"
export GIT_AUTHOR_NAME=${GIT_AUTHOR_NAME:-cd4ml demo} GIT_AUTHOR_EMAIL=${GIT_AUTHOR_EMAIL:-demo@cd4ml-kkbox.invalid}
export GIT_COMMITTER_NAME=$GIT_AUTHOR_NAME GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "clone into $WORK/repo"
git clone -q "$ROOT" "$WORK/repo"
cd "$WORK/repo"
ln -s "$ROOT/.venv" .venv
echo 0.5 > baseline.txt && git commit -qm "demo: start from baseline 0.5" -- baseline.txt || true

step "data: $SCALE scale, cut into $CHUNKS chunks; the history restarts with chunk 1"
python -m cd4ml.generate --scale "$SCALE" --out data
START=$(git rev-parse HEAD)
python -m cd4ml.chunks --chunks "$CHUNKS" --out incoming --commit

for version in $(seq 1 "$CHUNKS"); do
  if ((version > 1)); then
    step "version $version: ingest the next chunk"
    python -m cd4ml.ingest --incoming incoming --commit
  fi
  step "version $version: dvc repro (only the stages whose inputs changed)"
  dvc repro 2>&1 | grep -E "^(Running stage|Stage '.*' didn't change)" || true
  step "version $version: gate (challenger against the prod bundle, on the same eval rows)"
  python -m cd4ml.registry fetch --stage prod --out models/champion
  if python -m cd4ml.gate promote; then
    released="released"
  else
    released="not released"
  fi
  cp metrics/gate.json "$WORK/gate-v$version.json"
  git add -A metrics eval dvc.lock baseline.txt
  git commit -qm "metrics of data version $version ($released)"
  if [[ $released == released ]]; then
    python -m cd4ml.registry release -m "data version $version" >/dev/null
  fi
done

step "the gate per data version (challenger vs champion, same eval rows)"
python - "$WORK" "$CHUNKS" <<'EOF'
import json, sys
work, chunks = sys.argv[1], int(sys.argv[2])
print("| version | champion | champion AUC | challenger AUC | difference | interval | passed |")
print("|---|---|---|---|---|---|---|")
for v in range(1, chunks + 1):
    g = json.load(open(f"{work}/gate-v{v}.json"))
    i = g["interval"]
    spread = f"{i['low']:+.4f} .. {i['high']:+.4f}" if i else "-"
    print(f"| {v} | {g['champion']} | {g['champion_roc_auc']:.4f} | {g['challenger_roc_auc']:.4f} "
          f"| {g['difference']:+.4f} | {spread} | {g['passed']} |")
EOF
python -m cd4ml.registry list

step "metrics per data version"
python -m cd4ml.history --out plots/history --since "$START"
python - <<'EOF'
import json
rows = json.load(open("plots/history/data_versions.json"))
print("| version | train.csv rows | ROC AUC | oracle AUC | commit |")
print("|---|---|---|---|---|")
for r in rows:
    print(f"| {r['version']} | {r['rows']:,} | {r['roc_auc']:.4f} | {r['oracle_roc_auc']} | {r['subject']} |")
EOF
echo "picture: $WORK/repo/plots/history/data_versions.png" >&2
