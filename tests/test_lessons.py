"""The lesson scripts run top to bottom and write their figures.

Each lesson runs as a learner would run it (``python lessons/NN_name.py``),
in a fresh working directory, with ``MINICNN_LESSONS_OUT`` pointing at a
temporary folder and ``MINICNN_LESSON_QUICK=1`` to shrink the training runs.
A lesson passes if it exits 0, prints every numbered section up to its last,
and writes the PNG files it promises (valid PNGs, not empty).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"

#: lesson -> (number of sections it prints, figures it must write, relative to the output folder)
EXPECTED = {
    "01_layers.py": (4, ["01_conv_feature_maps.png", "01_gradcheck.png"]),
    "02_training_sanity.py": (4, ["02_loss_curves.png"]),
    "03_cost_of_a_step.py": (8, ["03_cost_per_layer.png"]),
    "04_gradient_statistics.py": (6, ["04_grad_histogram.png", "04_density_lars.png",
                                      "04_run_plots/curves.png", "04_run_plots/density.png",
                                      "04_run_plots/lars.png"]),
    "05_writing_a_method.py": (4, ["05_accuracy_vs_energy.png", "05_plots/accuracy_vs_cost.png"]),
    "09_gradprune.py": (5, ["09_histogram.png", "09_density.png", "09_sparse_vs_dense.png"]),
    "10_psg.py": (4, ["10_number_line.png", "10_sign_agreement.png", "10_energy.png"]),
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: lesson -> number of "  check: <claim>: ok" lines it must print (claims it verifies on its own numbers)
CHECKS = {"09_gradprune.py": 8, "10_psg.py": 7}


def run_lesson(name: str, out: Path, **extra_env) -> subprocess.CompletedProcess:
    env = dict(os.environ, MINICNN_LESSONS_OUT=str(out), MINICNN_LESSON_QUICK="1", MPLBACKEND="Agg")
    env.update(extra_env)
    return subprocess.run([sys.executable, str(LESSONS / name)], cwd=out, env=env, capture_output=True,
                          text=True, timeout=300)


def test_every_lesson_is_listed():
    """A new lesson file must be added to EXPECTED (and so be run by this test file)."""
    found = sorted(p.name for p in LESSONS.glob("[0-9][0-9]_*.py"))
    assert found == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lesson_runs_and_writes_figures(name, tmp_path):
    sections, figures = EXPECTED[name]
    proc = run_lesson(name, tmp_path)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for i in range(1, sections + 1):
        assert f"\n{i}. " in proc.stdout, f"{name}: section {i} header missing"
    for fig in figures:
        path = tmp_path / fig
        assert path.is_file(), f"{name} did not write {fig}; wrote {sorted(p.name for p in tmp_path.rglob('*.png'))}"
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, f"{fig} is not a real PNG"
    if name in CHECKS:
        lines = [l for l in proc.stdout.splitlines() if l.startswith("  check: ")]
        assert len(lines) == CHECKS[name] and all(l.endswith(": ok") for l in lines), lines
    # the output folder is the only place a lesson writes to
    assert not (tmp_path / "lessons_out").exists()


def test_lesson_falls_back_to_synthetic_data(tmp_path):
    """With MINICNN_CIFAR10 pointing nowhere useful, a lesson says so and uses the synthetic data."""
    proc = run_lesson("01_layers.py", tmp_path, MINICNN_CIFAR10=str(tmp_path / "no-such-dir"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "using synthetic data instead" in proc.stdout
    assert "data: synthetic" in proc.stdout
    assert (tmp_path / "01_conv_feature_maps.png").is_file()


def test_default_output_folder_is_lessons_out(tmp_path):
    """Without MINICNN_LESSONS_OUT, figures go to ./lessons_out (created)."""
    env = {k: v for k, v in os.environ.items() if k != "MINICNN_LESSONS_OUT"}
    env.update(MINICNN_LESSON_QUICK="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(LESSONS / "03_cost_of_a_step.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "lessons_out" / "03_cost_per_layer.png").is_file()
