#!/usr/bin/env bash
# Issue 18, step 1: the baseline plateau sweeps, one after the other, one worker on one thread
# (the other core stays free). Resumable: rerun it and finished runs are skipped.
set -u
cd "$(dirname "$0")"
out=../../../docs/measurements/converged
for spec in "$@"; do
    name=$(basename "$spec" .toml)
    MINICNN_NUM_THREADS=1 minicnn sweep "$spec" --out "$out/$name" --workers 1 --no-progress
done
