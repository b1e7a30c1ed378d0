#!/usr/bin/env bash
# Commit the small files of every finished run of the converged-regime sweeps (issue 18), so that a later session
# resumes from them: sweep.json, and per completed run summary.json, metrics.jsonl, config.json, cost.json.
# Runs in progress are left out: checkpoints are data (1-6 MB each) and are never committed, so a run that a
# session's end stops restarts from scratch in the next checkout.
set -eu
cd "$(dirname "$0")/../../.."
out=docs/measurements/converged
PY=${PYTHON:-.venv/bin/python}
# finished = completed or diverged, as the sweep engine decides (runs_state.py); an interrupted run's summary
# says so, and it restarts from its local checkpoint
"$PY" benchmarks/papers/converged/runs_state.py finished | while read -r run; do
    for f in summary.json metrics.jsonl config.json cost.json; do
        [ -f "$run/$f" ] && git add "$run/$f"
    done
done
for sweep in "$out"/*/; do
    [ -f "$sweep/sweep.json" ] && git add "$sweep/sweep.json"
done
git add "$out"/README.md 2>/dev/null || true
if ! git diff --cached --quiet; then
    git commit -q -m "${1:-docs/measurements/converged: finished runs}" && echo "committed"
else
    echo "nothing new"
fi
