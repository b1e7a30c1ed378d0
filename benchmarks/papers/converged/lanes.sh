#!/usr/bin/env bash
# The converged sweeps (issue 18) in two background lanes, one thread each, at the lowest priority, so that the
# machine stays usable for other work; every sweep resumes where it stopped (finished runs are skipped, an
# interrupted run restarts from its local checkpoint, or from scratch when the checkpoint was not kept).
#
#   benchmarks/papers/converged/lanes.sh start      # lane 1: e2train (the longest sweep), then resnet8's
#                                                   # plateau runs at 256 epochs, E2-Train's rows at 128 epochs,
#                                                   # resnet8's plateau runs at 512 epochs and resnet20's at 128
#                                                   # (step 1 first), Fig. 4's
#                                                   # second target at 128, every E2-Train row at 256 (e2train
#                                                   # first), two runs at a time;
#                                                   # lane 2: wus, lars, resnet20's plateau runs (32 and 64
#                                                   # epochs, 3 seeds each), gradprune, the SGD-at-lr-0.03 ablation,
#                                                   # SLU against stochastic depth on resnet20, then lane 1's last
#                                                   # sweeps at one run at a time, taking each sweep lane 1 is not
#                                                   # in (a sweep's lock tells), so no core idles in a sweep's tail
#   benchmarks/papers/converged/lanes.sh start-lane2  # lane 2's share of lane 1's sweeps, beside a running lane 1
#   benchmarks/papers/converged/lanes.sh status     # the runs in progress and their epochs
#   benchmarks/papers/converged/lanes.sh pause      # SIGSTOP every sweep process (before timing something)
#   benchmarks/papers/converged/lanes.sh resume     # SIGCONT
#   benchmarks/papers/converged/lanes.sh stop       # SIGINT: runs end "interrupted" and resume next time
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

lane() {   # lane NAME MAXWORKERS SWEEP...: the sweeps one after the other; wus's baselines are copied into lars
            # first; a sweep the other lane is running (its folder's lock is held) is left to it
    local name=$1 maxw=$2; shift 2
    (
        export MINICNN_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
        for sweep in "$@"; do
            lock="$OUT/${sweep%.toml}/.sweep.lock"
            if [ -f "$lock" ] && ! flock -n "$lock" true; then
                echo "$name: $sweep is being run by the other lane; next"
                continue
            fi
            # a sweep whose baseline runs another sweep already made (the same configuration: the same run id)
            case "$sweep" in
                lars) adopt wus lars ;;
                ablation_slu_resnet20.toml) adopt plateau_resnet20_e64 ablation_slu_resnet20 "$sweep" ;;
                headline_e2train_e128*.toml) adopt plateau_resnet8_e128 "${sweep%.toml}" "$sweep" ;;
                headline_e2train_e256.toml) adopt plateau_resnet8_e256 headline_e2train_e256 "$sweep" ;;
            esac
            workers=1
            case "$sweep" in headline_*|plateau_resnet8_e256*|plateau_resnet8_e512*|plateau_resnet20_e128*) workers=$maxw ;; esac
            if [ "${sweep%.toml}" != "$sweep" ]; then      # a spec of this folder (an ablation): minicnn sweep
                nice -n 19 "$PY" -m minicnn sweep "benchmarks/papers/converged/$sweep" \
                    --out "$OUT/${sweep%.toml}" --workers "$workers" --no-progress || break
            else                                            # a converged preset
                nice -n 19 "$PY" -m minicnn reproduce "$sweep" --converged --out "$OUT/$sweep" --workers 1 \
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
    start-lane2)   # lane 2 alone, beside a lane 1 that is already running
        lane lane2 1 headline_e2train_e128_target06.toml plateau_resnet20_e128.toml headline_e2train_e256.toml \
            plateau_resnet8_e512.toml
        sleep 2
        renice_loop
        echo "lane 2 started; logs in $LOG"
        ;;
    start)
        if pgrep -f "$parents" > /dev/null; then
            echo "lanes.sh: sweeps are already running (lanes.sh status)" >&2
            exit 1
        fi
        lane lane1 "${HEADLINE_WORKERS:-2}" e2train plateau_resnet8_e256.toml headline_e2train_e128.toml \
            plateau_resnet8_e512.toml plateau_resnet20_e128.toml headline_e2train_e128_target06.toml \
            headline_e2train_e256.toml
        # lane 2 ends with lane 1's last sweeps at one worker, so that no core idles in a sweep's last run
        lane lane2 1 wus lars plateau_resnet20_e32.toml plateau_resnet20_e64.toml gradprune ablation_sgd_lr0.03.toml \
            ablation_slu_resnet20.toml headline_e2train_e128_target06.toml plateau_resnet20_e128.toml \
            headline_e2train_e256.toml plateau_resnet8_e512.toml
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
    *) echo "usage: lanes.sh start|start-lane2|status|pause|resume|stop" >&2; exit 2 ;;
esac
