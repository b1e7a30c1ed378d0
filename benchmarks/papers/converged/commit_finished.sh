#!/usr/bin/env bash
# Commit the small files of every finished run of the converged-regime sweeps (issue 18), so that a later session
# resumes from them: sweep.json, and per completed run summary.json, metrics.jsonl, config.json, cost.json.
#
#   commit_finished.sh ["message"]          finished runs only (runs in progress are left out)
#   commit_finished.sh --park ["message"]   also every stopped run that can resume (lanes.sh stop first): its
#                                           checkpoint.npz (about 0.85 MB for resnet8) with its small files, so
#                                           that the next session's checkout continues it where it stopped
#                                           instead of starting it over (a 512-epoch run is longer than a session)
#
# A parked run's checkpoint leaves the tree again (git rm --cached) once the run has finished.
set -eu
park=0
if [ "${1:-}" = "--park" ]; then park=1; shift; fi
cd "$(dirname "$0")/../../.."
out=docs/measurements/converged
PY=${PYTHON:-.venv/bin/python}
# finished = completed or diverged, as the sweep engine decides (runs_state.py); an interrupted run's summary
# says so, and it restarts from its local checkpoint
"$PY" benchmarks/papers/converged/runs_state.py finished | while read -r run; do
    for f in summary.json metrics.jsonl config.json cost.json; do
        [ -f "$run/$f" ] && git add "$run/$f"
    done
    git rm -q --cached --ignore-unmatch "$run/checkpoint.npz" > /dev/null
done
if [ "$park" = 1 ]; then
    if pgrep -f "minicnn train .*$out" > /dev/null; then
        echo "commit_finished.sh: runs are still training (lanes.sh stop first); not parking" >&2
        exit 1
    fi
    "$PY" benchmarks/papers/converged/runs_state.py resumable | while read -r run; do
        git add -f "$run/checkpoint.npz"           # *.npz is ignored under docs/measurements/converged
        for f in summary.json metrics.jsonl config.json; do
            [ -f "$run/$f" ] && git add "$run/$f"
        done
        echo "parked $run"
    done
fi
for sweep in "$out"/*/; do
    [ -f "$sweep/sweep.json" ] && git add "$sweep/sweep.json"
done
git add "$out"/README.md 2>/dev/null || true
if ! git diff --cached --quiet; then
    git commit -q -m "${1:-docs/measurements/converged: finished runs}" && echo "committed"
else
    echo "nothing new"
fi
