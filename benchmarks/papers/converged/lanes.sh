#!/usr/bin/env bash
# The converged sweeps (issue 18) in one background lane, one thread per run, at the lowest priority, so that the
# machine stays usable for other work; every sweep resumes where it stopped (finished runs are skipped, an
# interrupted run restarts from its local checkpoint, or from scratch in a new checkout: checkpoints are not
# committed).
#
#   benchmarks/papers/converged/lanes.sh start      # every sweep in turn, $LANE_WORKERS (default 3) runs at a time:
#                                                   # the presets (wus, lars, e2train, gradprune) and the ablations
#                                                   # (finished: skipped at once), the lr-0.03 control at 16 and 32
#                                                   # epochs, the plateau runs, every E2-Train row at 256 epochs,
#                                                   # then resnet20's baseline at 256 epochs
#   benchmarks/papers/converged/lanes.sh status     # the runs in progress and their epochs
#   benchmarks/papers/converged/lanes.sh pause      # SIGSTOP every sweep process (before timing something)
#   benchmarks/papers/converged/lanes.sh resume     # SIGCONT
#   benchmarks/papers/converged/lanes.sh stop       # SIGINT: runs end "interrupted" and resume next time
#
# One lane, not two: two sweep processes cannot share a sweep (its folder's lock), so a second lane idled or
# ended whenever the first held the only sweep left. Three runs on two cores keep both busy through a sweep's
# tail (the 2026-12-07 night session ran resnet8's three 512-epoch runs this way: about 11 s an epoch each).
# A run longer than what is left of a session is lost at its end: start the lane at a session's beginning.
#
# Logs: $LANES_LOG (default /tmp/minicnn-lanes). Commit what finished with commit_finished.sh.
set -eu
cd "$(dirname "$0")/../../.."
ROOT=$(pwd)
OUT=docs/measurements/converged
LOG=${LANES_LOG:-/tmp/minicnn-lanes}
PY=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$LOG"
parents="minicnn (reproduce|sweep) .*--out $OUT"     # the sweep processes (a preset, or an ablation's spec)
pattern="$parents|minicnn train .*$OUT"              # ... and the runs they start

adopt() {   # adopt FROM TO [SPEC]: FROM's finished runs that are also TO's (the same arguments) into TO's runs/,
            # where the sweep skips them; SPEC first writes TO's sweep.json (a new folder needs it before the copy)
    [ -n "${3:-}" ] && "$PY" benchmarks/papers/converged/runs_state.py prepare "benchmarks/papers/converged/$3" "$OUT/$2"
    [ -f "$OUT/$2/sweep.json" ] && "$PY" benchmarks/papers/converged/runs_state.py adopt "$OUT/$1" "$OUT/$2"
    return 0
}

lane() {   # lane NAME WORKERS SWEEP...: the sweeps one after the other; wus's baselines are copied into lars
            # first; a sweep another process is running (its folder's lock is held) is left to it
    local name=$1 workers=$2; shift 2
    (
        export MINICNN_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
        for sweep in "$@"; do
            lock="$OUT/${sweep%.toml}/.sweep.lock"
            if [ -f "$lock" ] && ! flock -n "$lock" true; then
                echo "$name: $sweep is being run by another process; next"
                continue
            fi
            # a sweep whose baseline runs another sweep already made (the same configuration: the same run id)
            case "$sweep" in
                lars) adopt wus lars ;;
                ablation_slu_resnet20.toml) adopt plateau_resnet20_e64 ablation_slu_resnet20 "$sweep" ;;
                headline_e2train_e128*.toml) adopt plateau_resnet8_e128 "${sweep%.toml}" "$sweep" ;;
                headline_e2train_e256.toml) adopt plateau_resnet8_e256 headline_e2train_e256 "$sweep" ;;
            esac
            if [ "${sweep%.toml}" != "$sweep" ]; then      # a spec of this folder (an ablation): minicnn sweep
                nice -n 19 "$PY" -m minicnn sweep "benchmarks/papers/converged/$sweep" \
                    --out "$OUT/${sweep%.toml}" --workers "$workers" --no-progress || break
            else                                            # a converged preset
                nice -n 19 "$PY" -m minicnn reproduce "$sweep" --converged --out "$OUT/$sweep" --workers "$workers" \
                    --no-progress || break
            fi
        done
    ) >> "$LOG/$name.log" 2>&1 &
}

renice_loop() {   # keep every sweep process, and its autogroup, at nice 19 (a new run starts a new session)
    (
        while pgrep -f "$pattern" > /dev/null; do
            for p in $(pgrep -f "minicnn train .*$OUT"); do
                echo 19 > "/proc/$p/autogroup" 2>/dev/null || true
                renice -n 19 -p "$p" > /dev/null 2>&1 || true
            done
            sleep 15
        done
    ) > /dev/null 2>&1 &
}

case "${1:-status}" in
    start)
        if pgrep -f "$parents" > /dev/null; then
            echo "lanes.sh: sweeps are already running (lanes.sh status)" >&2
            exit 1
        fi
        lane lane1 "${LANE_WORKERS:-3}" wus lars e2train gradprune ablation_sgd_lr0.03.toml ablation_slu_resnet20.toml \
            ablation_lr0.03_short.toml \
            plateau_resnet8_e256.toml plateau_resnet8_e512.toml plateau_resnet20_e128.toml headline_e2train_e128.toml \
            headline_e2train_e128_target06.toml headline_e2train_e256.toml plateau_resnet20_e256.toml
        sleep 2
        renice_loop
        echo "started; logs in $LOG"
        ;;
    status)
        "$PY" benchmarks/papers/converged/runs_state.py unfinished | sed 's/^/in progress or interrupted: /'
        pgrep -af "$parents" | sed 's/^/running: /' || echo "no sweep running"
        ;;
    pause) pkill -STOP -f "$pattern" || true ;;
    resume) pkill -CONT -f "$pattern" || true ;;
    stop) pkill -INT -f "$parents" || true ;;
    *) echo "usage: lanes.sh start|status|pause|resume|stop" >&2; exit 2 ;;
esac
