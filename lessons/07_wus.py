"""Lesson 7: Weight Update Skipping (WUS, WUS+LR), Safayenikoo & Akturk 2020, §3 and Algorithm 1.

Run it top to bottom:

    python lessons/07_wus.py

1. what the paper claims;
2. the controller, step by step, on a scripted validation curve: the
   initial epoch (§3.1), Alg. 1's "epoch > initial epoch", the patience
   rule that buys exactly one normal epoch;
3. what a WUS epoch computes on real tensors: backward stops right after
   the last layer's bias gradient;
4. a run long enough for the paper's thresholds to fire (resnet8, a step
   schedule, validation images carved from the training set);
5. why the thresholds fire late on a small validation set (the scaling),
   and what WUS+LR would have decided on the same curve;
6. a plot of the epoch kinds over the validation curve.

Figure: ``07_wus_epoch_kinds.png`` in the output folder.
"""
import inspect

import numpy as np
from matplotlib.figure import Figure

from _lesson import QUICK, check, finish, Timer, load_data, save, section
from _runs import train
from minicnn.cost import Ledger
from minicnn.hooks import HookList
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.methods.wus import NORMAL, WUS, WeightUpdateSkipping, WUSController
from minicnn.models import build

if QUICK:
    N_TRAIN, N_VAL, N_TEST, EPOCHS, MILESTONES, BATCH = 128, 100, 50, 22, [4, 7], 32
else:
    N_TRAIN, N_VAL, N_TEST, EPOCHS, MILESTONES, BATCH = 3600, 500, 1000, 30, [10, 20], 128
LR, SEED = 0.05, 0

# ---------------------------------------------------------------------------------------------
section("1. What the paper claims")
print(inspect.cleandoc("""
    Once validation accuracy stagnates, the weights barely move (§2, Fig. 1); WUS then updates only the
    biases of the last layer ("1L", §3.3; every reported result, §4.2-4.3) for whole epochs and skips
    every weight update and its gradient (§3). Table 1 (a 10-core Xeon CPU, 200 epochs, lr 0.1 /10
    after 30 epochs, §4.1): WUS takes 49.5-58.9% less training time on CIFAR-10, 37.1-49.7% on
    CIFAR-100; Table 2: a mean accuracy loss of 0.71 points on CIFAR-10 (WUS+LR: 0.59; §1 gives both
    means); Table 3: 71-74% fewer parameter updates on CIFAR-10 (WUS and WUS+LR, counted by Eq. 1,
    §4.4). Defaults: patience 7, delta 0 (Alg. 1), std threshold 0.71 (§3.1, footnote 1: no unit
    given; minicnn reads percent points), over a window the paper does not give (minicnn: the last 5
    validations).
"""))

# ---------------------------------------------------------------------------------------------
section("2. The controller, step by step")
# a validation curve (fractions): rising, then flat, then slowly slipping below its best
curve = [0.30, 0.42, 0.50, 0.55, 0.58, 0.59, 0.595, 0.60, 0.598, 0.60, 0.597, 0.596, 0.596, 0.595, 0.597,
         0.596, 0.595, 0.594, 0.596, 0.595, 0.60, 0.594, 0.595]
ctl = WUSController(patience=7, delta=0.0, std_threshold=0.71, window=5)
print(f"  {'epoch':>5} {'kind':>7} {'val acc':>8} {'std(5) pp':>10} {'best':>6} {'count':>6}   note")
kinds = []
for e, acc in enumerate(curve):
    kind = ctl.kind_of(e)
    kinds.append(kind)
    prev_initial, prev_trigger = ctl.initial_epoch, ctl.previous_epoch
    ctl.observe(e, acc)
    std = "-" if ctl.stds[-1] is None else f"{ctl.stds[-1]:.2f}"
    note = ""
    if ctl.initial_epoch is not None and prev_initial is None:
        note = f"two successive std < 0.71 -> initial epoch = {ctl.initial_epoch}"
    if ctl.previous_epoch != prev_trigger:
        note = f"count reached patience -> epoch {e + 1} is normal"
    print(f"  {e:>5} {kind:>7} {100 * acc:>7.1f}% {std:>10} {ctl.best:>6.1f} {ctl.count:>6}   {note}")
init = ctl.initial_epoch
check(f"Alg. 1 switches only when epoch > initial epoch: epoch {init} normal, {init + 1} WUS",
      kinds[init] == NORMAL and kinds[init + 1] == WUS)
trig = [e for e in range(len(curve) - 1) if e > init and kinds[e] == WUS and kinds[e + 1] == NORMAL]
check("each time patience runs out, exactly one normal epoch follows",
      len(trig) >= 1 and all(kinds[e + 2] == WUS for e in trig if e + 2 < len(kinds)))
print("  (best and count carry on from the normal phase: the first trigger comes 7 non-improving\n"
      "   validations after the last new best, counted across the switch to WUS)")

# ---------------------------------------------------------------------------------------------
section("3. What a WUS epoch computes")
model = build("resnet8", num_classes=10, seed=SEED)
wus = WeightUpdateSkipping()
ledger = Ledger(model)
model.set_hooks(HookList([ledger]))


class _State:                       # the few fields the method reads, for a step by hand
    def __init__(self, m):
        self.model, self.epoch, self.lr, self.epochs, self.schedule = m, 0, LR, 1, None


st = _State(model)
wus.on_train_begin(st)
ran = {}
for leaf in model.leaves():
    def counted(dy, _orig=leaf.backward, _n=leaf.name):
        ran[_n] = ran.get(_n, 0) + 1
        return _orig(dy)
    leaf.backward = counted
x = np.random.default_rng(0).standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
y = np.arange(BATCH) % 10
loss = SoftmaxCrossEntropy()


def step():
    ran.clear()
    before = ledger.totals()
    with Timer() as t:
        loss.forward(model.forward(x), y)
        model.zero_grad()
        model.backward(loss.backward())
    after = ledger.totals()
    return t.seconds, {p: after[p].macs - before[p].macs for p in ("forward", "backward_input", "backward_weight")}


step()                                                          # warm up
t_normal, macs_normal = step()
ran_normal = dict(ran)
wus.controller.initial_epoch = -1                               # pretend the initial epoch has passed
wus.on_epoch_begin(st)
t_wus, macs_wus = step()
print(f"  targets of a 1L WUS epoch: {[f'{m.name}.{n}' for m, n in wus._targets]}")
print(f"  normal step: backward of {len(ran_normal)} layers; MACs {macs_normal}; {1e3 * t_normal:.1f} ms")
print(f"  WUS step:    backward of {sorted(ran)}; MACs {macs_wus}; {1e3 * t_wus:.1f} ms")
check("in a WUS epoch only fc's backward runs", sorted(ran) == ["fc"])
check("fc computes dL/db only: no dL/dW, no dL/dx -- the frozen gradients are never computed",
      model["fc"].grads["weight"] is None and model["fc"].grads["bias"] is not None)
check("the ledger counts no backward MACs at all (db is a sum, not MACs)",
      macs_wus["backward_input"] == 0 and macs_wus["backward_weight"] == 0)

# ---------------------------------------------------------------------------------------------
section(f"4. A run long enough to fire: resnet8, {EPOCHS} epochs, lr {LR} /10 at {MILESTONES}")
ds = load_data(N_TRAIN + N_VAL, N_TEST, seed=0)
tr, summ, secs = train(ds, ["wus"], arch="resnet8", epochs=EPOCHS, lr=LR, schedule="step",
                       milestones=MILESTONES, batch_size=BATCH, val_images=N_VAL, seed=SEED)
rec = summ["method_records"]["wus"]
kinds, per = rec["kinds"], rec["per_epoch"]
hist = tr.state.history
print(f"  controller reads {summ['controller_metric']} ({N_VAL} images); test accuracy is only reported")
print(f"  {'epoch':>5} {'lr':>8} {'kind':>7} {'val acc':>8} {'std pp':>7} {'count':>6} {'train s':>8}")
for r, k, p, s in zip(hist, kinds, per, secs):
    std = "-" if p["std_pp"] is None else f"{p['std_pp']:.2f}"
    print(f"  {r['epoch']:>5} {r['lr']:>8.4g} {k:>7} {100 * r['val_acc']:>7.1f}% {std:>7} {p['count']:>6} {s:>8.2f}")
n_wus = kinds.count(WUS)
print(f"  initial epoch {rec['initial_epoch']} (0-based); {n_wus} WUS epochs of {len(kinds)}; "
      f"parameter updates skipped (Eq. 1): {rec['updates_skipped_fraction_eq1']:.1%}")
check("with the paper's thresholds the controller fired within the run", n_wus >= 1)
macs = np.diff([0] + [r["macs_cum"] for r in hist])
normal_macs = np.median([m for m, k in zip(macs, kinds) if k == NORMAL])
wus_macs = np.median([m for m, k in zip(macs, kinds) if k == WUS])
t_n = np.median([s for s, k in zip(secs, kinds) if k == NORMAL][1:])
t_w = np.median([s for s, k in zip(secs, kinds) if k == WUS])
print(f"  a WUS epoch: {wus_macs / normal_macs:.1%} of a normal epoch's MACs (the forward pass), "
      f"{t_w / t_n:.0%} of its training time here (median; measured, not asserted)")
check("a WUS epoch does less than 40% of a normal epoch's MACs", wus_macs / normal_macs < 0.4)

# ---------------------------------------------------------------------------------------------
section("5. Why the thresholds fire late here, and WUS+LR on the same curve")
print(inspect.cleandoc(f"""
    minicnn reads the threshold 0.71 in percent points of validation accuracy (the paper gives no unit,
    footnote 1), and the paper validated on 10,000 images (§4.1: "The training set and validation set
    consist of 50,000 and 10,000 images", i.e. CIFAR's test split), where one image is 0.01 points.
    Here one image is {100 / N_VAL:.2f} points.
    Between two epochs some predictions flip; if a fraction f of n images flip at random, the accuracy
    jitters by about 100*sqrt(f/n) points -- 1/sqrt(n): on {N_VAL} images the same network jitters about
    sqrt(10000/{N_VAL}) = {np.sqrt(1e4 / N_VAL):.1f}x more than on the paper's. So the standard deviation of 5
    epochs only drops below 0.71 once the predictions stop changing -- after the learning rate has
    been cut. minicnn keeps the paper's defaults; to scale the threshold to n validation images,
    multiply it by about sqrt(10000 / n): --method wus:std_threshold={0.71 * np.sqrt(1e4 / N_VAL):.2f} here.
    Replaying the run's own validation curve through the controller (decisions only; the training
    would differ once it switches):
"""))
val = [r["val_acc"] for r in hist]
lrs = [r["lr"] for r in hist]
scaled = 0.71 * np.sqrt(1e4 / N_VAL)
for label, c in (("paper's threshold 0.71 (this run)", WUSController()),
                 (f"scaled threshold {scaled:.2f}", WUSController(std_threshold=scaled)),
                 ("WUS+LR, threshold 0.71", WUSController(lr_reset=True))):
    ks = c.run(val, lrs)
    print(f"    {label:<36} {''.join('W' if k == WUS else '.' for k in ks)}  initial epoch {c.initial_epoch}")
check("the replay with the run's options reproduces the run's decisions", WUSController().run(val, lrs) == kinds)

# ---------------------------------------------------------------------------------------------
section("6. Epoch kinds over the validation curve")
fig = Figure(figsize=(10, 6.5), layout="constrained")
ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
ep = np.arange(1, len(hist) + 1)
for e, k in zip(ep, kinds):
    if k == WUS:
        ax.axvspan(e - 0.5, e + 0.5, color="#c44e52", alpha=0.18, lw=0)
        ax2.axvspan(e - 0.5, e + 0.5, color="#c44e52", alpha=0.18, lw=0)
ax.plot(ep, [100 * v for v in val], "-o", color="#4c72b0", ms=4, label=f"validation accuracy ({N_VAL} images)")
ax.plot(ep, [100 * r["test_acc"] for r in hist], "-", color="#8c8c8c", lw=1, label="test accuracy (not used)")
for m in MILESTONES:
    ax.axvline(m + 0.5, color="k", lw=0.8, ls=":")
if rec["initial_epoch"] is not None:
    ax.axvline(rec["initial_epoch"] + 1, color="#55a868", lw=1.2, ls="--", label="initial epoch (§3.1; still normal)")
ax.plot([], [], color="#c44e52", alpha=0.3, lw=8, label="WUS epoch (only fc.bias trains)")
ax.set(ylabel="accuracy (%)", title=f"WUS on resnet8 ({ds.name}): epoch kinds; dotted lines = LR cut x0.1")
ax.legend(fontsize=8, loc="lower right")
ax.grid(alpha=0.3)
stds = [np.nan if p["std_pp"] is None else p["std_pp"] for p in per]
ax2.plot(ep, stds, "-s", color="#dd8452", ms=3, label="std of the last 5 validations (pp)")
ax2.axhline(0.71, color="#55a868", lw=1, label="threshold 0.71 pp")
ax2.set(xlabel="epoch", ylabel="pp")
ax2.legend(fontsize=8, loc="upper right")
ax2.grid(alpha=0.3)
save(fig, "07_wus_epoch_kinds.png")
finish()
