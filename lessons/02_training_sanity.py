"""Lesson 2: sanity checks before you train for real.

Run it top to bottom:

    python lessons/02_training_sanity.py

Three rituals (CS231n's "babysitting the learning process") that catch most
bugs in minutes instead of hours:

1. The loss at initialization. With C classes and a freshly initialized net,
   the softmax is close to uniform, so the cross-entropy is close to
   -log(1/C) = log(C): log(10) = 2.303 for CIFAR-10. Far off means a bad
   init, a wrong loss, or wrongly scaled inputs.
2. Overfit a tiny set. A model with 300k parameters must be able to memorize
   64 images (100 % training accuracy) when nothing else (augmentation,
   weight decay) gets in the way. If it cannot, something in
   forward/backward/update is broken.
3. Then a short real run with the Trainer: the training loss should fall
   over the run (the first dozen batches may rise above log(10) before it
   does) and the test accuracy should beat chance (10 %) clearly.

Every claim is a ``check`` (``[ok]``/``[FAIL]``); the lesson exits non-zero
if one fails.

Figure: ``02_loss_curves.png`` in the output folder.
"""
import math

import numpy as np
from matplotlib.figure import Figure

from _lesson import QUICK, Timer, check, finish, load_data, save, section
from minicnn.data import BatchIterator, channel_stats, subset
from minicnn.hooks import Hook
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.models import build
from minicnn.training import SGD, Trainer, evaluate, make_schedule

N_TINY = 32 if QUICK else 64             # images to memorize
MAX_STEPS = 60                           # full-batch steps allowed for that
N_TRAIN, N_TEST = (640, 200) if QUICK else (1500, 500)
EPOCHS = 2
BATCH = 64

ds = load_data(N_TRAIN, N_TEST, seed=0)
mean, std = channel_stats(ds.train_x)       # per-channel normalization, from the training images
print(f"per-channel mean {np.round(mean, 3)}, std {np.round(std, 3)} (in [0, 1] pixel units)")
loss_fn = SoftmaxCrossEntropy()

# ---------------------------------------------------------------------------------------------
section("1. The loss at initialization is about log(C)")
model = build("convnet-small", num_classes=ds.num_classes, seed=0)
print(f"convnet-small: {model.num_params():,} parameters")
x, y = next(iter(BatchIterator(ds.train_x, ds.train_y, 128, shuffle=False, mean=mean, std=std)))
print(f"a batch: x {x.shape} {x.dtype} (mean {x.mean():.3f}, std {x.std():.3f}), labels {y.shape}")
logits = model.forward(x)
loss0 = loss_fn(logits, y)
p = np.exp(logits - logits.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
print(f"initial loss {loss0:.4f}   vs   log({ds.num_classes}) = {math.log(ds.num_classes):.4f}")
print(f"softmax probabilities: min {p.min():.3f}, max {p.max():.3f} (uniform would be {1 / ds.num_classes:.3f})")
print("close enough: random weights make the softmax only roughly uniform; within ~10-20% of log(C) is the "
      "usual healthy range")
check("initial loss within 20% of log(C)", abs(loss0 - math.log(ds.num_classes)) < 0.2 * math.log(ds.num_classes),
      f"{loss0:.3f} vs {math.log(ds.num_classes):.3f}")

# What a bad init looks like: scale the classifier's weights by 50. The logits grow, the softmax
# becomes confident and wrong, and the initial loss is far above log(10).
fc = model["fc"]
saved = fc.params["weight"].copy()
fc.params["weight"] *= 50
bad = loss_fn(model.forward(x), y)
fc.params["weight"][...] = saved
print(f"with the last layer's weights x50 the initial loss would be {bad:.2f}: a red flag")
check("a x50 classifier init starts far above log(C) (more than twice)", bad > 2 * math.log(ds.num_classes),
      f"{bad:.2f}")

# ---------------------------------------------------------------------------------------------
section(f"2. Overfit {N_TINY} images")
# One training step, written out (the Trainer does exactly this, plus hooks):
#     logits = model.forward(x); loss = loss_fn(logits, y)
#     model.zero_grad(); model.backward(loss_fn.backward())    # fills layer.grads
#     optimizer.step()                                         # p -= lr * (momentum buffer)
# No augmentation and no weight decay: we WANT to memorize.
tiny = subset(ds, N_TINY, 10, seed=1)
xt, yt = next(iter(BatchIterator(tiny.train_x, tiny.train_y, N_TINY, shuffle=False, mean=mean, std=std)))
model = build("convnet-small", num_classes=ds.num_classes, seed=0)
opt = SGD(model, lr=0.01, momentum=0.9)
tiny_loss, tiny_acc = [], []
with Timer() as t_tiny:
    for step in range(MAX_STEPS):
        logits = model.forward(xt)
        loss = loss_fn(logits, yt)
        model.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
        acc = float((logits.argmax(axis=1) == yt).mean())   # accuracy of this step's forward
        tiny_loss.append(loss)
        tiny_acc.append(acc)
        if step % 5 == 0 or acc == 1.0:
            print(f"  step {step:3d}: loss {loss:.4f}, train accuracy {acc:6.1%}")
        if acc == 1.0 and loss < 0.05:
            break
ev = evaluate(model, tiny.train_x, tiny.train_y, mean=mean, std=std)
print(f"after {len(tiny_loss)} steps ({t_tiny.seconds:.1f} s): training-mode accuracy {tiny_acc[-1]:.1%}; "
      f"eval-mode accuracy on the same {N_TINY} images {ev['accuracy']:.1%} (loss {ev['loss']:.3f})")
print("(eval mode uses BatchNorm's running statistics, which lag behind after so few steps: a gap here "
      "is BatchNorm, not a bug)")
check(f"the model memorizes the {N_TINY} images (100% training accuracy within {MAX_STEPS} steps)",
      tiny_acc[-1] == 1.0, f"{tiny_acc[-1]:.1%} after {len(tiny_acc)} steps")
check("and the training loss fell below a tenth of its start", tiny_loss[-1] < 0.1 * tiny_loss[0],
      f"{tiny_loss[0]:.3f} -> {tiny_loss[-1]:.3f}")

# ---------------------------------------------------------------------------------------------
section(f"3. A short real run: {N_TRAIN} images, {EPOCHS} epoch(s), with the Trainer")


class BatchLoss(Hook):
    """Record the loss of every training batch (a hook: the Trainer calls on_batch_end)."""

    def __init__(self):
        self.steps, self.losses = [], []

    def on_batch_end(self, state):
        self.steps.append(state.global_step)
        self.losses.append(state.loss)


# Learning rate 0.005 with momentum 0.9. (Try 0.05: the loss of the first epoch jumps far above
# log(10) before it recovers -- the 4096-input classifier of convnet-small takes large steps. Watching
# the first few dozen batch losses is how you pick a learning rate.)
LR = 0.005
model = build("convnet-small", num_classes=ds.num_classes, seed=0)
opt = SGD(model, lr=LR, momentum=0.9, weight_decay=5e-4)
recorder = BatchLoss()
trainer = Trainer(model, ds, opt, make_schedule("cosine", LR, EPOCHS), EPOCHS, batch_size=BATCH,
                  augment=("flip",), methods=[recorder], seed=0, progress=False)
with Timer() as t_run:
    summary = trainer.fit()
hist = trainer.state.history
for r in hist:
    print(f"  epoch {r['epoch']}: train loss {r['train_loss']:.3f}, train acc {r['train_acc']:.1%} | "
          f"test loss {r['test_loss']:.3f}, test acc {r['test_acc']:.1%}")
print(f"{len(recorder.losses)} batches in {t_run.seconds:.1f} s: first batch loss {recorder.losses[0]:.3f}, "
      f"last {recorder.losses[-1]:.3f}; final test accuracy {summary['final_test_acc']:.1%} "
      f"(chance: {1 / ds.num_classes:.0%})")
k = max(1, len(recorder.losses) // 4)
first, last = np.mean(recorder.losses[:k]), np.mean(recorder.losses[-k:])
check(f"the training loss falls (mean of the last {k} batches below that of the first {k})", last < first,
      f"{first:.3f} -> {last:.3f}")
# Beating chance, statistically: with n test images, a chance-level model's accuracy has standard deviation
# sqrt(p(1-p)/n); 3 of them above chance is a one-sided z-test at about the 0.1% level.
p0, n_test = 1 / ds.num_classes, len(ds.test_y)
bar = p0 + 3 * math.sqrt(p0 * (1 - p0) / n_test)
check("the test accuracy beats chance by 3 standard deviations", summary["final_test_acc"] > bar,
      f"{summary['final_test_acc']:.1%} > {bar:.1%} with {n_test} test images")

# ---------------------------------------------------------------------------------------------
section("4. Plot the curves")
fig = Figure(figsize=(12, 4.4), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
steps = np.arange(len(tiny_loss))
ax1.plot(steps, tiny_loss, "-o", ms=3, color="#4c72b0", label="training loss")
ax1.axhline(math.log(ds.num_classes), color="0.5", ls=":", label=f"log({ds.num_classes}) = chance level")
ax1.set(xlabel="step (full batch)", ylabel="cross-entropy loss", title=f"Overfitting {N_TINY} images")
ax1b = ax1.twinx()
ax1b.plot(steps, 100 * np.array(tiny_acc), color="#dd8452", label="training accuracy")
ax1b.set_ylabel("training accuracy (%)", color="#dd8452")
ax1b.set_ylim(0, 105)
h1, l1 = ax1.get_legend_handles_labels()
h2, l2 = ax1b.get_legend_handles_labels()
ax1.legend(h1 + h2, l1 + l2, loc="center right", fontsize=8)
ax1.grid(alpha=0.3)

losses = np.array(recorder.losses)
k = min(8, len(losses))
smooth = np.convolve(losses, np.ones(k) / k, mode="valid")   # running mean over k batches
ax2.plot(recorder.steps, losses, color="#4c72b0", alpha=0.35, label="training loss per batch")
ax2.plot(recorder.steps[k - 1:], smooth, color="#4c72b0", label=f"running mean of {k} batches")
per_epoch = len(losses) / max(len(hist), 1)
ax2.plot([per_epoch * r["epoch"] for r in hist], [r["test_loss"] for r in hist], "s--", color="#c44e52",
         label="test loss (end of epoch)")
ax2.axhline(math.log(ds.num_classes), color="0.5", ls=":", label=f"log({ds.num_classes})")
for r in hist:
    ax2.annotate(f"test acc {r['test_acc']:.0%}", (per_epoch * r["epoch"], r["test_loss"]),
                 textcoords="offset points", xytext=(-8, -6), ha="right", va="top", fontsize=8, color="#c44e52")
ax2.set(xlabel="training batch", ylabel="cross-entropy loss",
        title=f"convnet-small on {ds.name}: {N_TRAIN} images, {EPOCHS} epoch(s)")
ax2.legend(fontsize=8)
ax2.grid(alpha=0.3)
fig.suptitle("Sanity checks: memorize a tiny set, then train for real", fontweight="bold")
save(fig, "02_loss_curves.png")
print("\nDone. Next: lessons/03_cost_of_a_step.py")
finish()
