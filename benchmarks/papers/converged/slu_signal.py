"""What SLU's gates learn from: the straight-through task gradient per image, against what skipping really
does (issue 18, step 4: why the learned gates stay flat).

    python benchmarks/papers/converged/slu_signal.py RUN_DIR/model.npz [...] [--data-dir DIR] [--images 1024]

SLU's gate for block b gets, per image, dL/dm = <dL/d(s + m F), F(x)> (straight-through, E2-Train §3.2 after
SkipNet; ``minicnn/methods/slu.py``) plus the cost term, the same for every image. Only dL/dm differs between
images, so it is all a gate can learn *which* images to skip from. On a trained SLU network and the first
``--images`` training images (what the gates train on, without augmentation), per gate:

* dL/dm per image, as the gates get it in training (BatchNorm on batch statistics, batches of 128, every
  image given the gradient as with ``exec=mask``): its mean, its spread across images, and the share of images
  where it is negative (running the block lowers the loss);
* the loss rise when block b alone is skipped (evaluation mode, every other block running): what dL/dm
  estimates to first order;
* Spearman's rank correlation of -dL/dm with that rise, and with the label-free change of the output when the
  block is skipped (the KL divergence that ``slu_oracle.py`` chooses by).

A gate reads the image, not its label: it can learn E[dL/dm | image features]. If dL/dm is mostly a per-image
spread of either sign around a mean near zero, and follows the label-free change weakly, there is little for
a gate to fit, and the cost term sets every p alike.
"""
import argparse
import os
import sys

import numpy as np

from minicnn.cli import _load_data
from minicnn.data import BatchIterator
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.training.checkpoint_io import load_checkpoint

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slu_oracle import forward_all, kl_rows, log_softmax, masked_slu  # noqa: E402


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (no ties in continuous data)."""
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


class Images:
    """A test-set-shaped view of some training images (``forward_all`` reads test_x and test_y)."""

    def __init__(self, x, y):
        self.test_x, self.test_y = x, y


def task_signal(model, slu, images, mean, std, batch=128) -> np.ndarray:
    """(G, N) dL/dm per gate and image, in training mode (batch statistics), every image given the gradient.

    The loss is a batch mean, so SLU's per-sample dL/dm is scaled back by the batch size. The model's
    BatchNorm running statistics are updated by these forwards: call this last.
    """
    slu.exec = "mask"
    model.train()
    loss = SoftmaxCrossEntropy()
    G, N = len(slu.gated), len(images.test_y)
    out = np.zeros((G, N))
    off = 0
    for xb, yb in BatchIterator(images.test_x, images.test_y, batch, shuffle=False, mean=mean, std=std):
        loss.forward(model.forward(xb), yb)
        model.backward(loss.backward())
        for l in range(G):
            out[l, off:off + len(yb)] = slu.task_dm[l] * len(yb)
        off += len(yb)
    return out


def analyse(path: str, images) -> list:
    model, meta, mean, std, methods = load_checkpoint(path, with_methods=True)
    slu, over = masked_slu(path, model, methods)
    y = images.test_y
    N, G = len(y), len(slu.gated)
    lp0 = log_softmax(forward_all(model, images, mean, std, over, None)[0])
    rows = []
    rises, kls = [], []
    for b in range(G):
        masks = np.ones((G, N), dtype=bool)
        masks[b] = False
        lp = log_softmax(forward_all(model, images, mean, std, over, masks)[0])
        rises.append(lp0[np.arange(N), y] - lp[np.arange(N), y])
        kls.append(kl_rows(lp0, lp))
    dm = task_signal(model, slu, images, mean, std)
    for b in range(G):
        rows.append({"dm_mean": float(dm[b].mean()), "dm_sd": float(dm[b].std()),
                     "dm_negative": float((dm[b] < 0).mean()), "rise_mean": float(rises[b].mean()),
                     "rise_sd": float(rises[b].std()), "r_rise": spearman(-dm[b], rises[b]),
                     "r_kl": spearman(-dm[b], kls[b])})
    return rows


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data-dir", default="../shared/data/cifar-10-batches-py")
    ap.add_argument("--images", type=int, default=1024)
    a = ap.parse_args(argv)
    ds = _load_data("cifar10", a.data_dir)
    images = Images(ds.train_x[:a.images], ds.train_y[:a.images])
    for path in a.models:
        print(path)
        print("  gate | dL/dm mean, sd across images, share < 0 | loss rise when skipped: mean, sd | "
              "Spearman(-dL/dm, rise), (-dL/dm, KL)")
        for b, r in enumerate(analyse(path, images)):
            print(f"  {b} | {r['dm_mean']:+.3f}, {r['dm_sd']:.3f}, {r['dm_negative']:.2f} | {r['rise_mean']:+.3f}, "
                  f"{r['rise_sd']:.3f} | {r['r_rise']:+.2f}, {r['r_kl']:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
