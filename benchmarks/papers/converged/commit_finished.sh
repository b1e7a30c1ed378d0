#!/usr/bin/env bash
# Commit the small files of every finished run of the converged-regime sweeps (issue 18), so that a later session
# resumes from them: sweep.json, and per completed run summary.json, metrics.jsonl, config.json, cost.json.
# Runs still in progress are left out (a later session restarts them: their checkpoints are not committed).
set -eu
cd "$(dirname "$0")/../../.."
out=docs/measurements/converged
added=0
for sweep in "$out"/*/; do
    [ -f "$sweep/sweep.json" ] || continue
    for run in "$sweep"runs/*/; do
        [ -f "$run/summary.json" ] || continue
        # only finished runs (an interrupted run's summary says so: it restarts from its local checkpoint)
        grep -q '"status": "\(completed\|diverged\)"' "$run/summary.json" || continue
        git add "$run"summary.json "$run"metrics.jsonl "$run"config.json "$run"cost.json 2>/dev/null && added=1
    done
    git add "$sweep/sweep.json"
done
git add "$out"/README.md 2>/dev/null || true
if ! git diff --cached --quiet; then
    git commit -q -m "${1:-docs/measurements/converged: finished runs}" && echo "committed"
else
    echo "nothing new"
fi
