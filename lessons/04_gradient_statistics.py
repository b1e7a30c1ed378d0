"""Lesson 4: looking at gradients -- record them during training, read them back, plot them.

Run it top to bottom:

    python lessons/04_gradient_statistics.py

Training-efficiency methods are built on facts about gradients. This lesson
measures three of them on a short CIFAR run of convnet-small:

1. Density (fraction of non-zeros) of the activation gradient dL/dy. Ye et
   al., "Accelerating CNN Training by Sparsifying Activation Gradients",
   §3.2: in a Conv-ReLU network the gradient at a conv's output is sparse
   (ReLU's backward zeroes it where the unit was off), while in a
   Conv-BN-ReLU network BatchNorm's backward mixes every value of a channel
   and the gradient at the conv's output is dense.
2. The shape of that dense gradient. Ye et al. §3.2 model it as N(0, sigma^2)
   and estimate sigma from the mean absolute value (DBTD):
       E|g| = sqrt(2/pi) * sigma   =>   sigma_hat = sqrt(pi/2) * mean|g|
   (the paper's formula, sigma_hat = (1/n) sqrt(2/pi) sum|g_i|, has the
   factor inverted; the unbiased estimator follows from its own E(A) line --
   see section 4 below, which checks it numerically).
3. How much each layer's weights still move: the LARS ratio of Miyauchi et
   al. (§III, eq. 1-3), ||w_end|| / ||w_end - w_begin|| over one epoch. A
   large ratio means the layer barely changes and could skip its update.

The StatsRecorder hook writes all of it to ``stats.jsonl`` in the run
directory; ``load_stats`` reads it back; ``minicnn.plots.plot_runs`` draws
the standard figures.

Each claim the lesson makes about its numbers is a ``check`` (``[ok]`` /
``[FAIL]``); the lesson exits non-zero if one fails.

Figures (output folder): ``04_grad_histogram.png``, ``04_density_lars.png``
and the standard run figures in ``04_run_plots/``.
"""
import math
import shutil

import numpy as np
from matplotlib.figure import Figure

from _lesson import QUICK, Timer, check, check_close, finish, load_data, out_dir, save, section
from minicnn.hooks import Hook, HookList
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.models import build
from minicnn.plots import plot_runs
from minicnn.stats import StatsRecorder, load_stats
from minicnn.training import SGD, Trainer, make_schedule

N_TRAIN, N_TEST, EPOCHS, BATCH = (192, 100, 2, 32) if QUICK else (384, 200, 3, 32)
LR = 0.002
run_dir = out_dir() / "04_run"
shutil.rmtree(run_dir, ignore_errors=True)   # a fresh run directory each time

# ---------------------------------------------------------------------------------------------
section(f"1. Train convnet-small for {EPOCHS} epochs on {N_TRAIN} images, recording statistics")
ds = load_data(N_TRAIN, N_TEST, seed=0)
model = build("convnet-small", num_classes=ds.num_classes, seed=0)
# every=2: statistics of every 2nd trained batch (moments, density, a signed log-magnitude histogram
# of every gradient); every epoch: weight norms and LARS ratios.
stats = StatsRecorder(model, every=2)
trainer = Trainer(model, ds, SGD(model, lr=LR, momentum=0.9), make_schedule("constant", LR, EPOCHS), EPOCHS,
                  batch_size=BATCH, stats=stats, run_dir=str(run_dir), seed=0, progress=False)
with Timer() as t:
    summary = trainer.fit()
for r in trainer.state.history:
    print(f"  epoch {r['epoch']}: train loss {r['train_loss']:.3f}, test acc {r['test_acc']:.1%}")
print(f"{summary['batches_done']} batches in {t.seconds:.1f} s; run directory {run_dir}: "
      f"{', '.join(sorted(p.name for p in run_dir.iterdir()))}")
check("the run directory holds stats.jsonl", (run_dir / "stats.jsonl").is_file())

# ---------------------------------------------------------------------------------------------
section("2. Read the statistics back")
st = load_stats(run_dir)
print(f"stats.jsonl: {len(st.batch)} batch records, {len(st.epoch)} epoch records, {len(st.init)} init records")
batches_recorded = len({r["step"] for r in st.batch})
check("every 2nd trained batch was recorded (every=2)", batches_recorded == -(-summary["batches_done"] // 2),
      f"{batches_recorded} of {summary['batches_done']} batches")
print(f"layers: {', '.join(st.layers())}")
print(f"tensors recorded for bn2: {st.tensors('bn2')}")
rec = st.batch_records("conv3", "grad_output")[-1]
print("the last record of conv3's dL/dy: " + ", ".join(
    f"{k}={rec[k]:.3g}" if isinstance(rec[k], float) else f"{k}={rec[k]}"
    for k in ("epoch", "step", "numel", "mean", "std", "mean_abs", "density")))

# ---------------------------------------------------------------------------------------------
section("3. Density of dL/dy: after ReLU's backward vs after BatchNorm's backward (Ye et al. §3.2)")
# In convnet-small each block is conv -> bn -> relu. Backward runs right to left, so
#     dL/dy of bn   = what relu's backward produced  (zero wherever the ReLU was off)
#     dL/dy of conv = what bn's backward produced    (every value mixes the whole channel)
# and, after a max-pool, dL/dy of the relu below it = pool's backward (3 of 4 values zero).
print(f"{'block':<7} {'ReLU on (activation density)':>29} {'dL/dy of bn (after ReLU bwd)':>30} "
      f"{'dL/dy of conv (after BN bwd)':>30}")
dens = {}
for i in range(1, 5):
    act = np.nanmean(st.series(f"relu{i}", "activation", "density")[1])
    g_bn = np.nanmean(st.series(f"bn{i}", "grad_output", "density")[1])
    g_conv = np.nanmean(st.series(f"conv{i}", "grad_output", "density")[1])
    dens[i] = (g_bn, g_conv)
    print(f"{i:<7} {act:>29.1%} {g_bn:>30.1%} {g_conv:>30.1%}")
print("Blocks 2 and 4 end in a max-pool: its backward sends each dy to one of 4 inputs, so bn2/bn4 see "
      "~1/4 of ~1/2.")
print("Conv-BN-ReLU: the gradient reaching each conv is dense, as Ye et al. say.")
check("Conv-BN-ReLU: dL/dy of every conv is dense (> 99% non-zero)", all(d[1] > 0.99 for d in dens.values()),
      ", ".join(f"conv{i} {d[1]:.1%}" for i, d in dens.items()))
check("dL/dy of every bn (after ReLU's backward) is sparse (< 75% non-zero)", all(d[0] < 0.75 for d in dens.values()),
      ", ".join(f"bn{i} {d[0]:.1%}" for i, d in dens.items()))
check("after a max-pool (blocks 2, 4) it is sparser still (< 1/2 of blocks 1, 3)",
      max(dens[2][0], dens[4][0]) < 0.5 * min(dens[1][0], dens[3][0]))

# The Conv-ReLU case, for contrast: vgg11-cifar has no BatchNorm. One training step, with a tiny
# hook that measures dL/dy at every conv (a hook sees every layer; see lesson 5).


class ConvGradDensity(Hook):
    def __init__(self):
        self.density = {}

    def observe_backward(self, layer, dy, dx):
        if type(layer).__name__ == "Conv2d":
            self.density[layer.name] = np.count_nonzero(dy) / dy.size


vgg = build("vgg11-cifar", num_classes=ds.num_classes, seed=0, width=0.25)
probe = ConvGradDensity()
vgg.set_hooks(HookList([probe]))
xb = ((ds.train_x[:32].astype(np.float32) / 255) - 0.5) / 0.25
loss_fn = SoftmaxCrossEntropy()
loss_fn(vgg.forward(xb), ds.train_y[:32])
vgg.backward(loss_fn.backward())
vgg_density = dict(reversed(list(probe.density.items())))     # backward visits them last-first
print("vgg11-cifar (Conv-ReLU, width 0.25), density of dL/dy at each conv's output after one step: "
      + ", ".join(f"{k} {v:.0%}" for k, v in vgg_density.items()))
print("Conv-ReLU: sparse, exactly where the ReLU above the conv was off.")
check("Conv-ReLU (vgg11-cifar): dL/dy of every conv is sparse (< 75% non-zero)",
      all(v < 0.75 for v in vgg_density.values()))

# ---------------------------------------------------------------------------------------------
section("4. The distribution of a dense activation gradient and its Gaussian fit (DBTD)")
# If g ~ N(0, sigma^2) then E|g| = sigma * sqrt(2/pi), so sigma_hat = sqrt(pi/2) * mean|g| estimates
# sigma from one cheap pass (no sort). Check the estimator on synthetic Gaussian numbers first:
z = np.random.default_rng(0).normal(0.0, 0.3, 100_000)
print(f"N(0, 0.3^2) samples: sqrt(pi/2)*mean|g| = {math.sqrt(math.pi / 2) * np.abs(z).mean():.4f}, "
      f"sqrt(2/pi)*mean|g| = {math.sqrt(2 / math.pi) * np.abs(z).mean():.4f}  (true sigma 0.3)")
# the estimator's relative standard error is sqrt(pi/2 - 1)/sqrt(n) = 0.24% for n = 1e5: 1% is 4 of them
check_close("sqrt(pi/2) * mean|g| estimates sigma (within 1%)", 0.3, math.sqrt(math.pi / 2) * np.abs(z).mean(),
            rtol=0.01, labels=("true sigma", "estimate"))
check("the paper's printed factor sqrt(2/pi) does not (off by 2/pi = 36%)",
      abs(math.sqrt(2 / math.pi) * np.abs(z).mean() / 0.3 - 2 / math.pi) < 0.01)
LAYER = "conv3"
rec = st.batch_records(LAYER, "grad_output")[-1]
sigma_hat = math.sqrt(math.pi / 2) * rec["mean_abs"]
print(f"{LAYER} dL/dy at step {rec['step']}: mean_abs {rec['mean_abs']:.3e}, std {rec['std']:.3e} -> "
      f"sigma_hat = sqrt(pi/2) * mean_abs = {sigma_hat:.3e} (a Gaussian would have std == sigma_hat; "
      f"ratio std/sigma_hat = {rec['std'] / sigma_hat:.2f})")
# DBTD's threshold for pruning a fraction q of the values: tau with P(|g| < tau) = q, i.e.
# tau = sigma_hat * Phi^-1((1 + q)/2). For q = 90 %: Phi^-1(0.95) = 1.645.
tau = 1.6449 * sigma_hat
print(f"DBTD threshold for pruning 90% of the values: tau = 1.645 * sigma_hat = {tau:.3e}")

# The recorded histogram: counts of |g| in log-spaced bins, positive and negative apart.
edges = st.bin_edges
steps, epochs, pos, neg, zeros, n = st.hist(LAYER, "grad_output")
pos, neg, n = pos[-1], neg[-1], n[-1]
cdf = np.array([math.erf(e / (sigma_hat * math.sqrt(2))) for e in edges])   # P(|g| < e) under the fit
expected = n * np.diff(cdf) / 2                                               # per sign
frac_below_tau = (pos + neg)[edges[1:] <= tau].sum() / n
print(f"measured fraction of |g| below tau (from the histogram, bins fully below tau): {frac_below_tau:.1%} "
      "(the Gaussian says 90%; heavier tails and a sharper peak move it)")

# The same gradient as a raw tensor, from one more batch. We also keep the gradient at bn3's output,
# which is zero exactly where relu3 was off, to split conv3's gradient into two groups.


class Capture(Hook):
    def __init__(self):
        self.g = {}

    def observe_backward(self, layer, dy, dx):
        if layer.name in (LAYER, "bn3"):
            self.g[layer.name] = dy.copy()


cap = Capture()
model.set_hooks(HookList([cap]))
model.train()
xb, yb = next(iter(trainer.train_iter))
loss_fn(model.forward(xb), yb)
model.backward(loss_fn.backward())
g = cap.g[LAYER].ravel()
relu_on = cap.g["bn3"].ravel() != 0
s_raw = math.sqrt(math.pi / 2) * np.abs(g).mean()
print(f"one more batch, raw {LAYER} dL/dy {cap.g[LAYER].shape}: mean {g.mean():.2e}, std {g.std():.3e}, "
      f"sigma_hat {s_raw:.3e}, density {np.count_nonzero(g) / g.size:.1%}")
print(f"  where relu3 was ON  ({relu_on.mean():.0%} of values): median |g| {np.median(np.abs(g[relu_on])):.2e}")
print(f"  where relu3 was OFF ({1 - relu_on.mean():.0%} of values): median |g| {np.median(np.abs(g[~relu_on])):.2e}")
check("where relu3 was off, |dL/dy| of conv3 is far smaller (median < 1/10 of where it was on)",
      np.median(np.abs(g[~relu_on])) < 0.1 * np.median(np.abs(g[relu_on])))
print("Where the ReLU was off, relu's backward sent 0, and BatchNorm's backward only adds its small per-channel "
      "correction terms\n(-A*(mean(dy) + xhat*mean(dy*xhat))): 'dense', but half of the values are tiny. That "
      "is why the\ndistribution is far from one Gaussian (and a hint why pruning small values can cost little accuracy).")

fig = Figure(figsize=(13, 4.8), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
lim = 5 * s_raw
ax1.hist(g, bins=np.linspace(-lim, lim, 101), density=True, color="#4c72b0", alpha=0.7, label="dL/dy values")
u = np.linspace(-lim, lim, 400)
ax1.plot(u, np.exp(-u ** 2 / (2 * s_raw ** 2)) / (s_raw * math.sqrt(2 * math.pi)), color="#c44e52", lw=2,
         label=f"N(0, sigma_hat^2), sigma_hat = sqrt(pi/2) mean|g| = {s_raw:.2e}")
ax1.axvspan(-1.645 * s_raw, 1.645 * s_raw, color="0.88", zorder=0, label="|g| < tau (90% under the fit)")
ax1.set(xlabel="gradient value", ylabel="probability density (clipped)",
        title=f"{LAYER}: dL/dy of one batch, linear scale")
top = 1.2 / s_raw
ax1.set_ylim(0, top)                 # the spike at 0 is far taller: clip it so the tails show
peak = np.histogram(g, bins=np.linspace(-lim, lim, 101), density=True)[0].max()
ax1.annotate(f"spike at 0 clipped (peak {peak:.2g})", (0, top), xytext=(0.6, 0.62), textcoords="axes fraction",
             fontsize=8, arrowprops=dict(arrowstyle="->", color="0.3"))
ax1.legend(fontsize=8, loc="upper left")
centers = np.sqrt(edges[1:] * edges[:-1])
on_counts, _ = np.histogram(np.abs(g[relu_on]), bins=edges)
off_counts, _ = np.histogram(np.abs(g[~relu_on]), bins=edges)
ax2.bar(edges[:-1], on_counts / g.size, width=np.diff(edges), align="edge", color="#4c72b0", alpha=0.6,
        label="this batch, where relu3 was on")
ax2.bar(edges[:-1], off_counts / g.size, width=np.diff(edges), align="edge", bottom=on_counts / g.size,
        color="#dd8452", alpha=0.6, label="this batch, where relu3 was off")
ax2.step(centers, (pos + neg) / n, where="mid", color="k", lw=1.2, label=f"stats.jsonl record (step {rec['step']})")
ax2.plot(centers, 2 * expected / n, "--", color="#c44e52", lw=2, label="Gaussian fit (sigma_hat), same bins")
ax2.axvline(tau, color="0.4", ls=":", label="DBTD tau for 90%")
nz = (pos + neg + on_counts + off_counts) > 0
ax2.set_xscale("log")
ax2.set_xlim(edges[:-1][nz].min(), edges[1:][nz].max())
ax2.set(xlabel="|gradient| (log scale; 4 bins per decade)", ylabel="fraction of values per bin",
        title=f"{LAYER}: magnitudes, as stats.jsonl stores them")
ax2.legend(fontsize=8, loc="upper left")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
fig.suptitle("A dense activation gradient and its DBTD Gaussian fit (Ye et al. §3.2)", fontweight="bold")
save(fig, "04_grad_histogram.png")

# ---------------------------------------------------------------------------------------------
section("5. LARS ratio per layer and epoch (Miyauchi et al. §III, eq. 1-3)")
#     lars = ||w_end||_2 / ||w_end - w_begin||_2     over one epoch
# Small: the epoch changed the layer a lot relative to its size. Large: the layer has settled.
layers = [l for l in st.layers() if st.epoch_records(l, "weight")]
print(f"{'layer':<7}" + "".join(f"{'epoch ' + str(e + 1):>10}" for e in range(EPOCHS)) + f"{'||w|| end':>11}")
lars = {}
for l in layers:
    ep, v = st.epoch_series(l, "weight", "lars")
    _, norm = st.epoch_series(l, "weight", "norm")
    lars[l] = v
    print(f"{l:<7}" + "".join(f"{x:>10.1f}" for x in v) + f"{norm[-1]:>11.2f}")
with_weights = {m.name for m in model.leaves() if "weight" in m.params}
check(f"a LARS ratio per layer with weights and epoch ({len(layers)} layers x {EPOCHS} epochs), finite and > 1",
      set(layers) == with_weights and all(len(v) == EPOCHS and np.all(np.isfinite(v)) and np.all(np.asarray(v) > 1)
                               for v in lars.values()))

fig = Figure(figsize=(16, 4.6), layout="constrained")
ax1, ax3, ax2 = fig.subplots(1, 3, width_ratios=[1, 1, 1.1])
blocks = np.arange(1, 5)
ax1.bar(blocks - 0.2, [100 * dens[i][0] for i in blocks], 0.4, color="#dd8452", label="dL/dy of bn (after ReLU backward)")
ax1.bar(blocks + 0.2, [100 * dens[i][1] for i in blocks], 0.4, color="#4c72b0", label="dL/dy of conv (after BN backward)")
ax1.set_xticks(blocks, [f"block {i}" for i in blocks])
ax1.set(ylabel="non-zero values (%)", ylim=(0, 115), title="convnet-small (Conv-BN-ReLU)")
ax1.legend(fontsize=8, loc="upper center", ncol=1)
ax3.bar(range(len(vgg_density)), [100 * d for d in vgg_density.values()], color="#dd8452",
        label="dL/dy of conv (after ReLU backward)")
ax3.set_xticks(range(len(vgg_density)), list(vgg_density), fontsize=8)
ax3.set(ylabel="non-zero values (%)", ylim=(0, 115), title="vgg11-cifar, width 0.25 (Conv-ReLU), one step")
ax3.legend(fontsize=8, loc="upper center")
for ax in (ax1, ax3):
    ax.grid(axis="y", alpha=0.3)
for l in layers:
    ax2.plot(np.arange(1, len(lars[l]) + 1), lars[l], "-o", ms=4, label=l)
ax2.set_yscale("log")
ax2.set(xlabel="epoch", ylabel="||w|| / ||w_end - w_begin||", title="LARS ratio per layer (larger = moves less)")
ax2.xaxis.get_major_locator().set_params(integer=True)
ax2.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
ax2.grid(alpha=0.3)
fig.suptitle("Activation-gradient density (Ye et al. §3.2) and LARS ratios (Miyauchi et al. eq. 1)", fontweight="bold")
save(fig, "04_density_lars.png")

# ---------------------------------------------------------------------------------------------
section("6. The standard figures: minicnn.plots.plot_runs")
paths = plot_runs([str(run_dir)], out_dir=str(out_dir() / "04_run_plots"))
for p in paths:
    print(f"  {p}")
print("(the same as `minicnn plot RUN_DIR` on the command line)")
check("plot_runs drew the run's figures, density and LARS among them",
      {"curves.png", "density.png", "lars.png"} <= {p.rsplit("/", 1)[-1] for p in paths})
print("\nDone. Next: lessons/05_writing_a_method.py")
finish()
