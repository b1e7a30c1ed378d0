"""Could input-adaptive gates have helped? SLU's trained networks evaluated with other choices of which images
skip each block, at the same per-block rates (issue 18, step 4).

    python benchmarks/papers/converged/slu_oracle.py RUN_DIR/model.npz [...] [--data-dir DIR] [--draws 5]

E2-Train §3.2 gates blocks per input ("input-adaptive"), so that the images a block matters least for skip it.
On the slice SLU's gates learned the target rate and not the images (``slu_gates.py``: p's spread across images
0.001-0.003). This script asks what choosing the images could have bought, on the network SLU trained. Gate b
runs a share r_b of the test images, r_b = the mean of its learned p over them (the expected share when
m = 1[p > u], the official evaluation). Every row below runs each gated block for the same number of images (so
the same MACs), and differs only in *which* images:

* ``all blocks run``: minicnn's evaluation (m = 1[p > 0.5]; every p is above 0.5 here), the accuracy reported;
* ``learned, sampled``: m = 1[p > u], u ~ U(0, 1) (the official evaluation; its count varies around r_b);
* ``random``: r_b of the images at random (stochastic depth at inference);
* ``learned rank``: the r_b images with the highest learned p (if p's small spread carries any information
  about the images, this beats random);
* ``KL, each block alone``: for each block, the r_b images whose prediction changes most when that block alone
  is skipped (KL divergence of the softmax outputs, all other blocks running); it needs no label, so a gate
  could learn it in principle;
* ``KL, block by block``: the same, chosen in the network's order, each block scored with the choices already
  made for the blocks before it (so an image that several blocks would each skip alone is seen skipping them
  together).

No selection uses the test labels (one that does can beat the full network by skipping blocks where that
happens to fix a wrong answer: seed 0 of the resnet20 ablation scored 77.5% so, against 66.0% with every block
running; that is not something a gate can learn). The two KL choices are greedy, not optimal jointly.
"""
import argparse
import os
import sys

import numpy as np

from minicnn.cli import _load_data
from minicnn.data import BatchIterator
from minicnn.hooks import Hook, HookList
from minicnn.training.checkpoint_io import load_checkpoint

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slu_gates import find_slu  # noqa: E402


class _AlwaysRun:
    """A GateDecision stand-in: the SLU computes (and records) p, every block runs; the masks come from below."""

    @staticmethod
    def decide(p, training, rng=None, u=None):
        return np.ones(len(p), dtype=bool)


class MaskOverride(Hook):
    """block_gate: gated block l (``slu.gated[l]``) runs the images where ``masks[l, offset:offset + n]`` is True."""

    def __init__(self, gated: list):
        self.gate_of = {id(b): l for l, b in enumerate(gated)}
        self.masks = None
        self.offset = 0

    def block_gate(self, block, x):
        l = self.gate_of.get(id(block))
        if l is None or self.masks is None:
            return None
        return self.masks[l, self.offset:self.offset + x.shape[0]].copy()


def forward_all(model, ds, mean, std, override, masks, slu=None):
    """(logits of every test image, each gate's p per image) with ``masks`` (G, N) bool, or None (all run)."""
    override.masks = masks
    logits, ps = [], []
    off = 0
    for xb, yb in BatchIterator(ds.test_x, ds.test_y, 256, shuffle=False, mean=mean, std=std):
        override.offset = off
        logits.append(model.forward(xb))
        if slu is not None:
            ps.append(np.stack([np.asarray(p, dtype=np.float64).ravel() for p in slu.p]))
        off += len(yb)
    override.masks = None
    return np.concatenate(logits).astype(np.float64), (np.concatenate(ps, axis=1) if ps else None)


def refuse_other_eval_methods(path, methods, slu):
    """Exit if a method other than the SLU acts at evaluation (e2train's PSG evaluates in fixed point): these
    scripts replace the model's hooks with the SLU's and their own, and would score another network."""
    others = [m.name for m in methods if m is not slu and getattr(m, "acts_in_eval", False)]
    if others:
        raise SystemExit(f"{os.path.basename(sys.argv[0])}: {path} also uses {', '.join(others)} at evaluation; "
                         "only models trained with slu alone (or with methods that do not act at evaluation) "
                         "are supported")


def masked_slu(path, model, methods):
    """The model's SLU, set up for these scripts: every block runs unless a MaskOverride mask says otherwise.

    Returns (slu, override); the model's hooks become [slu, override], in evaluation mode. Exits with one line if
    the model has no SLU or another method acts at evaluation.
    """
    slu = find_slu(methods)
    if slu is None:
        raise SystemExit(f"{os.path.basename(sys.argv[0])}: {path} was not trained with slu")
    refuse_other_eval_methods(path, methods, slu)
    slu.decision = _AlwaysRun()
    override = MaskOverride(slu.gated)
    model.set_hooks(HookList([slu, override]))
    model.eval()
    return slu, override


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def kl_rows(lp_p: np.ndarray, lp_q: np.ndarray) -> np.ndarray:
    """Per row, KL(P || Q) from the log-probabilities of P and Q."""
    return (np.exp(lp_p) * (lp_p - lp_q)).sum(axis=1)


def kl_of_skipping(model, ds, mean, std, override, masks, b, lp_all=None) -> np.ndarray:
    """Per image, KL(softmax with ``masks`` || softmax with ``masks`` and block b skipped too).

    ``lp_all``: the log-softmax with every block running, reused when ``masks`` runs every block.
    """
    if masks.all() and lp_all is not None:
        lp_in = lp_all
    else:
        lp_in = log_softmax(forward_all(model, ds, mean, std, override, masks)[0])
    skipped = masks.copy()
    skipped[b] = False
    return kl_rows(lp_in, log_softmax(forward_all(model, ds, mean, std, override, skipped)[0]))


def top_mask(score: np.ndarray, k: int) -> np.ndarray:
    """True for the k entries with the highest score (ties broken by index)."""
    m = np.zeros(len(score), dtype=bool)
    m[np.argsort(-score, kind="stable")[:k]] = True
    return m


def analyse(path: str, ds, draws: int) -> dict:
    model, meta, mean, std, methods = load_checkpoint(path, with_methods=True)
    slu, override = masked_slu(path, model, methods)
    y = ds.test_y
    N, G = len(y), len(slu.gated)
    acc = lambda z: float((z.argmax(axis=1) == y).mean())            # noqa: E731
    base, p = forward_all(model, ds, mean, std, override, None, slu)
    rates = p.mean(axis=1)
    ks = np.rint(rates * N).astype(int)
    lp0 = log_softmax(base)
    ones = np.ones((G, N), dtype=bool)
    kl = np.stack([kl_of_skipping(model, ds, mean, std, override, ones, b, lp0) for b in range(G)])
    seq = ones.copy()
    for b in range(G):                                   # blocks before b keep the choices made for them
        seq[b] = top_mask(kl_of_skipping(model, ds, mean, std, override, seq, b, lp0), ks[b])
    rows = {"all blocks run": [acc(base)]}
    rng = np.random.default_rng(0)

    def run(masks):
        return acc(forward_all(model, ds, mean, std, override, masks)[0])
    if not (p > 0.5).all():                              # minicnn's evaluation is then not "all blocks run"
        rows["minicnn's evaluation, p > 0.5"] = [run(p > 0.5)]
    rows["learned, sampled"] = [run(p > rng.random(p.shape)) for _ in range(draws)]
    rows["random"] = [run(np.stack([top_mask(rng.random(N), k) for k in ks])) for _ in range(draws)]
    rows["learned rank"] = [run(np.stack([top_mask(p[b], ks[b]) for b in range(G)]))]
    rows["KL, each block alone"] = [run(np.stack([top_mask(kl[b], ks[b]) for b in range(G)]))]
    rows["KL, block by block"] = [run(seq)]
    return {"rates": rates, "p_sd": p.std(axis=1), "rows": rows}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data-dir", default="../shared/data/cifar-10-batches-py")
    ap.add_argument("--draws", type=int, default=5)
    a = ap.parse_args(argv)
    ds = _load_data("cifar10", a.data_dir)
    for path in a.models:
        r = analyse(path, ds, a.draws)
        print(f"{path}\n  per-gate run share r_b: {', '.join(f'{x:.3f}' for x in r['rates'])} "
              f"(p's sd across images: {', '.join(f'{x:.4f}' for x in r['p_sd'])})")
        for name, accs in r["rows"].items():
            sd = f" ± {100 * np.std(accs, ddof=1):.1f} ({len(accs)} draws)" if len(accs) > 1 else ""
            print(f"  {name:22s} {100 * np.mean(accs):5.1f}%{sd}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
