"""Lesson 5: write your own training-efficiency method and measure what it saves.

Run it top to bottom:

    python lessons/05_writing_a_method.py

A *method* in minicnn is a small class that plugs into named hook points
(``minicnn.hooks``); layers and the trainer know nothing about it. This
lesson

1. lists the hook points and shows, on one real batch, the order in which
   they fire;
2. writes a method in a dozen lines: train everything for one epoch, then
   freeze the first two conv blocks (the pattern of layer-skipping methods
   such as LARS skipping, Miyauchi et al. §III, or Weight Update Skipping,
   Safayenikoo & Akturk §3);
3. trains a baseline and the method with the same seed, with the cost
   ledger on, and compares work done (``summary()["savings"]``) and
   accuracy;
4. plots test accuracy against cumulative training energy for both runs.

Each claim about the numbers is a ``check`` (``[ok]``/``[FAIL]``); the
lesson exits non-zero if one fails.

Figure: ``05_accuracy_vs_energy.png`` (and the library's comparison plots in
``05_plots/``) in the output folder.
"""
import inspect
import shutil

import numpy as np
from matplotlib.figure import Figure

from _lesson import QUICK, Timer, check, check_equal, finish, load_data, out_dir, save, section
from minicnn.cost import Ledger
from minicnn.hooks import Hook, HookList
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.methods import METHODS, Method, build_methods
from minicnn.models import build
from minicnn.plots import plot_runs
from minicnn.training import SGD, Trainer, make_schedule

N_TRAIN, N_TEST, EPOCHS = (256, 100, 2) if QUICK else (640, 300, 3)
BATCH, LR, SEED = 64, 0.005, 0

# ---------------------------------------------------------------------------------------------
section("1. The hook points")
# Trainer level: called once per train / epoch / batch with a TrainState (model, optimizer, epoch,
# batch, loss, history, ...). Layer level: called by the containers around every layer.
for name in vars(Hook):
    if callable(getattr(Hook, name)) and not name.startswith("_"):
        level = "trainer" if name.startswith("on_") or name == "param_grad" else "layer  "
        print(f"  [{level}] {name}")

# Watch the layer-level ones fire on one batch: a hook that prints what it sees.


class Tracer(Hook):
    def __init__(self, layers):
        self.layers = layers
        self.seen = []                # (hook point, layer) in the order they fired
        self.dx_none = {}             # layer -> did its backward hand back no dx?

    def forward_output(self, layer, x, y):
        if layer.name in self.layers:
            print(f"    forward_output({layer.name}): x {x.shape} -> y {y.shape}")
            self.seen.append(("forward_output", layer.name))
        return y                      # a transforming hook must return the (possibly changed) tensor

    def backward_output_grad(self, layer, dy):
        if layer.name in self.layers:
            print(f"    backward_output_grad({layer.name}): dL/dy {dy.shape}  <- a method could prune dy here")
            self.seen.append(("backward_output_grad", layer.name))
        return dy

    def observe_backward(self, layer, dy, dx):
        if layer.name in self.layers:
            print(f"    observe_backward({layer.name}): dx {None if dx is None else dx.shape}, "
                  f"grads {[k for k, g in layer.grads.items() if g is not None]}")
            self.seen.append(("observe_backward", layer.name))
            self.dx_none[layer.name] = dx is None


ds = load_data(N_TRAIN, N_TEST, seed=0)
model = build("convnet-small", num_classes=ds.num_classes, seed=SEED)
tracer = Tracer({"conv1", "bn1", "fc"})
model.set_hooks(HookList([tracer]))
loss_fn = SoftmaxCrossEntropy()
x = (ds.train_x[:8].astype(np.float32) / 255 - 0.5) / 0.25
print("  one forward and backward of 8 images, traced at conv1, bn1 and fc:")
loss_fn(model.forward(x), ds.train_y[:8])
model.backward(loss_fn.backward())
print("  (conv1 computes no dx: nothing below it needs a gradient; see lesson 3)")
order = [(h, l) for h, l in tracer.seen]
want = [("forward_output", "conv1"), ("forward_output", "bn1"), ("forward_output", "fc"),
        ("backward_output_grad", "fc"), ("observe_backward", "fc"), ("backward_output_grad", "bn1"),
        ("observe_backward", "bn1"), ("backward_output_grad", "conv1"), ("observe_backward", "conv1")]
check("the hooks fire in order: forward bottom-up, then backward top-down, each layer's dy before its dx",
      order == want, " -> ".join(f"{h}({l})" for h, l in order))
check("conv1 hands back no dx; bn1 and fc do", tracer.dx_none == {"conv1": True, "bn1": False, "fc": False})

# ---------------------------------------------------------------------------------------------
section("2. A method in a dozen lines")


class FreezeAfter(Method):
    """Train every layer for ``after`` epochs, then freeze the listed layers for the rest of training.

    Freezing sets ``requires_grad`` False on the layers' params. The containers then stop backward at
    the lowest layer that still trains, and the optimizer skips params without a gradient, so the
    skipped work is really not done -- and the ledger counts only what was done.
    """

    name = "freeze-after"

    def __init__(self, layers: str = "conv1+bn1+conv2+bn2", after: int = 1):
        self.layers, self.after = layers, after

    def on_epoch_begin(self, state):
        if state.epoch == self.after:
            wanted = set(self.layers.split("+"))
            for layer in state.model.leaves():
                if layer.name in wanted:
                    layer.freeze()
            print(f"  [freeze-after] epoch {state.epoch + 1}: froze {self.layers}")


print(inspect.cleandoc(FreezeAfter.__doc__))
# Registering it makes it available to build_methods / the command line (`--method freeze-after:after=1`):
METHODS[FreezeAfter.name] = FreezeAfter
method = build_methods(["freeze-after:after=1"])[0]
print(f"built from a command-line spec: {method.describe()}")
check("the spec builds a FreezeAfter with after=1", isinstance(method, FreezeAfter) and method.after == 1)

# ---------------------------------------------------------------------------------------------
section(f"3. Baseline vs method: convnet-small, {N_TRAIN} images, {EPOCHS} epochs, same seed")
runs_root = out_dir() / "05_runs"
shutil.rmtree(runs_root, ignore_errors=True)


def train(methods, name):
    model = build("convnet-small", num_classes=ds.num_classes, seed=SEED)     # identical initial weights
    opt = SGD(model, lr=LR, momentum=0.9)
    ledger = Ledger(model, momentum=True)
    trainer = Trainer(model, ds, opt, make_schedule("constant", LR, EPOCHS), EPOCHS, batch_size=BATCH,
                      methods=methods, ledger=ledger, run_dir=str(runs_root / name), seed=SEED, progress=False)
    with Timer() as t:
        summary = trainer.fit()
    print(f"  {name}: {t.seconds:.1f} s, final test accuracy {summary['final_test_acc']:.1%}")
    return trainer, ledger, summary


base_tr, base_ledger, base = train([], "baseline")
meth_tr, meth_ledger, meth = train([method], "freeze-after")
print(f"\n{'epoch':<6}{'baseline test acc':>19}{'freeze-after test acc':>23}")
for rb, rm in zip(base_tr.state.history, meth_tr.state.history):
    print(f"{rb['epoch']:<6}{rb['test_acc']:>19.1%}{rm['test_acc']:>23.1%}")
same = base_tr.state.history[0]["train_loss"] == meth_tr.state.history[0]["train_loss"]
print(f"epoch 1 is bit-identical in both runs (same seed, the method has not acted yet): {same}")
check("epoch 1 is bit-identical in both runs (same seed, the method has not acted yet)",
      same and base_tr.state.history[0]["test_loss"] == meth_tr.state.history[0]["test_loss"])

print(f"\n{'':<22}{'baseline':>14}{'freeze-after':>14}")
for label, key in (("training MACs", "macs"), ("bytes moved", "bytes"), ("energy (J)", "energy_j")):
    b, m = base[key]["total"], meth[key]["total"]
    print(f"{label:<22}{b:>14.4g}{m:>14.4g}")
print(f"{'final test accuracy':<22}{base['final_test_acc']:>14.1%}{meth['final_test_acc']:>14.1%}")
print(f"{'best test accuracy':<22}{base['best_test_acc']:>14.1%}{meth['best_test_acc']:>14.1%}")
print("savings of the method vs its own dense count (summary()['savings']): "
      + ", ".join(f"{k} {v:.1%}" for k, v in meth["savings"].items()))
print("savings of the baseline (always zero): " + ", ".join(f"{k} {v:.1%}" for k, v in base["savings"].items()))
check("the baseline saves nothing (savings 0 in every unit)", all(v == 0 for v in base["savings"].values()))
check("the method saves MACs, bytes and energy", all(meth["savings"][k] > 0 for k in ("macs", "bytes", "energy")))
check_equal("the method's dense MACs == the baseline's actual MACs", base["macs"]["total"], meth["dense_macs"]["total"],
            labels=("baseline actual", "method dense"))
# Where the savings come from, by phase:
for ph in ("forward", "backward_input", "backward_weight", "update"):
    b, m = base["energy_j"][ph], meth["energy_j"][ph]
    print(f"  {ph:<16} energy: baseline {b:.4f} J, method {m:.4f} J ({1 - m / b:.0%} saved)")
check("freezing leaves the forward work unchanged", base["macs"]["forward"] == meth["macs"]["forward"])
# Check by hand: after epoch 1, each step skips conv1's dW, conv2's dW and dx and conv3's dx
# (lesson 3). Those MACs per image are 884,736 + 2 * 9,437,184 + 4,718,592.
skipped_per_image = 884_736 + 2 * 9_437_184 + 4_718_592
images_frozen = N_TRAIN * (EPOCHS - 1)
print(f"by hand: {skipped_per_image:,} MACs per image x {images_frozen} images = "
      f"{skipped_per_image * images_frozen:,}; ledger: {base['macs']['total'] - meth['macs']['total']:,}")
check_equal("MACs saved: by hand == ledger (baseline - method)", skipped_per_image * images_frozen,
            base["macs"]["total"] - meth["macs"]["total"])

# ---------------------------------------------------------------------------------------------
section("4. Accuracy vs cumulative energy")
fig = Figure(figsize=(13, 4.6), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
for tr, label, color, offset in ((base_tr, "baseline", "#4c72b0", (4, -12)),
                                 (meth_tr, "freeze-after (conv1-2, bn1-2 after epoch 1)", "#c44e52", (-30, 6))):
    h = tr.state.history
    e = [r["energy_j_cum"] for r in h]
    acc = [100 * r["test_acc"] for r in h]
    ax1.plot(e, acc, "-o", color=color, label=label)
    for r, xe, ya in zip(h, e, acc):
        ax1.annotate(f"ep {r['epoch']}", (xe, ya), textcoords="offset points", xytext=offset, fontsize=8,
                     color=color)
ax1.set_xlim(left=0)
ax1.set(xlabel="cumulative training energy (J, ledger estimate)", ylabel="test accuracy (%)",
        title="Test accuracy for the energy spent")
ax1.legend(fontsize=8, loc="lower right")
ax1.grid(alpha=0.3)
phases = ("forward", "backward_input", "backward_weight", "update")
colors = {"forward": "#4c72b0", "backward_input": "#dd8452", "backward_weight": "#c44e52", "update": "#55a868"}
for i, s in enumerate((base, meth)):
    left = 0.0
    for ph in phases:
        v = s["energy_j"][ph]
        ax2.barh(i, v, left=left, color=colors[ph], label=ph if i == 0 else None)
        left += v
    ax2.text(left, i, f"  {left:.3f} J", va="center", fontsize=9)
ax2.set_yticks([0, 1], ["baseline", "freeze-after"])
ax2.invert_yaxis()
ax2.margins(x=0.15)
ax2.set(xlabel="training energy of the whole run (J)", title=f"Where the energy went (method saves "
        f"{meth['savings']['energy']:.0%})")
ax2.legend(fontsize=8, loc="lower right")
ax2.grid(axis="x", alpha=0.3)
fig.suptitle(f"Writing a method: freeze the first two conv blocks after epoch 1 (convnet-small, {ds.name})",
             fontweight="bold")
save(fig, "05_accuracy_vs_energy.png")

paths = plot_runs([str(runs_root / "baseline"), str(runs_root / "freeze-after")], out_dir=str(out_dir() / "05_plots"))
print("the library's comparison figures (`minicnn plot RUN_DIR RUN_DIR`):")
for p in paths:
    print(f"  {p}")
check("plot_runs drew the comparison figures", {"curves.png", "accuracy_vs_cost.png"}
      <= {p.rsplit("/", 1)[-1] for p in paths})
print("\nDone. That is the whole course: lessons 1-5.")
finish()
