"""The lesson scripts run top to bottom and write their figures.

Each lesson runs as a learner would run it (``python lessons/NN_name.py``),
in a fresh working directory, with ``MINICNN_LESSONS_OUT`` pointing at a
temporary folder and ``MINICNN_LESSON_QUICK=1`` to shrink the training runs.
A lesson passes if it exits 0, prints every numbered section up to its last,
writes the PNG files it promises (valid PNGs, not empty), and ends with
``CHECKS: <passed> passed, 0 failed`` for at least as many checks as listed
below: every claim a lesson prints about its numbers ("by hand vs ledger",
"naive == fast", "beats chance", ...) is a ``_lesson.check``, and a failed
check makes the lesson exit 1.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"

#: lesson -> (number of sections it prints, figures it must write relative to the output folder,
#:            least number of checks it must pass)
EXPECTED = {
    "01_layers.py": (4, ["01_conv_feature_maps.png", "01_gradcheck.png"], 26),
    "02_training_sanity.py": (4, ["02_loss_curves.png"], 6),
    "03_cost_of_a_step.py": (8, ["03_cost_per_layer.png"], 26),
    "04_gradient_statistics.py": (6, ["04_grad_histogram.png", "04_density_lars.png",
                                      "04_run_plots/curves.png", "04_run_plots/density.png",
                                      "04_run_plots/lars.png"], 11),
    "05_writing_a_method.py": (4, ["05_accuracy_vs_energy.png", "05_plots/accuracy_vs_cost.png"], 10),
    "06_smd.py": (5, ["06_smd_accuracy_vs_energy.png"], 8),
    "07_wus.py": (6, ["07_wus_epoch_kinds.png"], 8),
    "08_lars_skip.py": (6, ["08_lars_nw.png"], 8),
    "09_gradprune.py": (5, ["09_histogram.png", "09_density.png", "09_sparse_vs_dense.png"], 8),
    "10_psg.py": (5, ["10_number_line.png", "10_sign_agreement.png", "10_energy.png"], 11),
    "11_slu.py": (6, ["11_gates.png", "11_accuracy_vs_energy.png", "11_gate_signal.png"], 8),
    "12_measuring_a_comparison.py": (5, ["12_plateau.png", "12_paired.png"], 14),
}
CHECKS_LINE = re.compile(r"^CHECKS: (\d+) passed, (\d+) failed$", re.MULTILINE)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def lesson_env(**extra) -> dict:
    """The environment a lesson runs in: this checkout's minicnn first on the path (not another installed one)."""
    env = dict(os.environ, MINICNN_LESSON_QUICK="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def run_lesson(name: str, out: Path, **extra_env) -> subprocess.CompletedProcess:
    env = lesson_env(MINICNN_LESSONS_OUT=str(out), **extra_env)
    return subprocess.run([sys.executable, str(LESSONS / name)], cwd=out, env=env, capture_output=True,
                          text=True, timeout=300)


def checks_of(proc) -> tuple[int, int]:
    """(passed, failed) from the lesson's one CHECKS line, which must be its last line."""
    lines = CHECKS_LINE.findall(proc.stdout)
    assert len(lines) == 1, f"expected one CHECKS line, found {len(lines)}:\n{proc.stdout[-3000:]}"
    assert proc.stdout.rstrip().splitlines()[-1].startswith("CHECKS: "), "CHECKS must be the last line"
    return int(lines[0][0]), int(lines[0][1])


def test_every_lesson_is_listed():
    """A new lesson file must be added to EXPECTED (and so be run by this test file)."""
    found = sorted(p.name for p in LESSONS.glob("[0-9][0-9]_*.py"))
    assert found == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lesson_runs_passes_its_checks_and_writes_figures(name, tmp_path):
    sections, figures, least_checks = EXPECTED[name]
    proc = run_lesson(name, tmp_path)
    failed = [l for l in proc.stdout.splitlines() if "[FAIL]" in l]
    assert proc.returncode == 0 and not failed, \
        f"{name} failed:\n" + "\n".join(failed) + f"\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    passed, n_failed = checks_of(proc)
    assert n_failed == 0 and passed >= least_checks, f"{name}: {passed} checks passed, {least_checks} expected"
    assert proc.stdout.count("[ok]") == passed
    for i in range(1, sections + 1):
        assert f"\n{i}. " in proc.stdout, f"{name}: section {i} header missing"
    for fig in figures:
        path = tmp_path / fig
        assert path.is_file(), f"{name} did not write {fig}; wrote {sorted(p.name for p in tmp_path.rglob('*.png'))}"
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, f"{fig} is not a real PNG"
    # the output folder is the only place a lesson writes to
    assert not (tmp_path / "lessons_out").exists()


def test_a_failed_check_fails_the_lesson(tmp_path):
    """The mechanism the lesson tests rely on: a [FAIL] makes the script exit 1 and the CHECKS line says so."""
    script = tmp_path / "lesson_with_a_wrong_claim.py"
    script.write_text("from _lesson import check, check_close, check_equal, finish\n"
                      "check('true claim', 1 + 1 == 2)\n"
                      "check_equal('by hand vs library', 6, 7)\n"
                      "check_close('close enough', 1.0, 1.0 + 1e-12, rtol=1e-9)\n"
                      "finish()\n")
    env = lesson_env()
    env["PYTHONPATH"] = os.pathsep.join([str(LESSONS), env["PYTHONPATH"]])
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[FAIL] by hand vs library  (by hand 6, minicnn 7)" in proc.stdout
    assert checks_of(proc) == (2, 1)


def test_lesson_falls_back_to_synthetic_data(tmp_path):
    """With MINICNN_CIFAR10 pointing nowhere useful, a lesson says so and uses the synthetic data."""
    proc = run_lesson("01_layers.py", tmp_path, MINICNN_CIFAR10=str(tmp_path / "no-such-dir"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "using synthetic data instead" in proc.stdout
    assert "data: synthetic" in proc.stdout
    assert (tmp_path / "01_conv_feature_maps.png").is_file()


def test_a_lesson_asking_for_more_than_the_slice_gets_its_largest_balanced_subset_of_real_images(tmp_path):
    """The non-quick lessons ask for up to 4,100 training and 1,000 test images; the project's slice has 388-437 and
    87-114 per class. They must still train on real CIFAR-10 (before this, they fell back to synthetic data)."""
    folder = ROOT.parent / "shared" / "data" / "cifar-10-batches-py"
    if not folder.is_dir():
        pytest.skip("the CIFAR slice is not at ../shared/data")
    code = ("from _lesson import load_data\n"
            "ds = load_data(4100, 1000)\n"
            "import numpy as np\n"
            "print('SIZES', len(ds.train_y), len(ds.test_y), np.bincount(ds.test_y).tolist())\n")
    env = lesson_env(MINICNN_CIFAR10=str(folder))
    env["PYTHONPATH"] = os.pathsep.join([str(LESSONS), env["PYTHONPATH"]])
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "synthetic" not in proc.stdout and "data: real CIFAR-10" in proc.stdout
    sizes = [ln for ln in proc.stdout.splitlines() if ln.startswith("SIZES")][0].split(maxsplit=3)
    n_train, n_test, per_class = int(sizes[1]), int(sizes[2]), json.loads(sizes[3])
    assert n_train % 10 == 0 and 3000 <= n_train <= 4100 and len(set(per_class)) == 1
    assert n_test == 10 * per_class[0] and n_test < 1000
    assert f"using {n_train} and {n_test} (asked for 4100 and 1000)" in proc.stdout


def test_default_output_folder_is_lessons_out(tmp_path):
    """Without MINICNN_LESSONS_OUT, figures go to ./lessons_out (created)."""
    env = {k: v for k, v in lesson_env().items() if k != "MINICNN_LESSONS_OUT"}
    proc = subprocess.run([sys.executable, str(LESSONS / "03_cost_of_a_step.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "lessons_out" / "03_cost_per_layer.png").is_file()
