"""Lesson 9: prune activation gradients stochastically (Ye et al. 2019) and see what it saves.

Run it top to bottom:

    python lessons/09_gradprune.py

Ye et al., "Accelerating CNN Training by Sparsifying Activation Gradients"
(papers/003), make the gradient at each convolution's output sparse (in a
Conv-BN-ReLU net such as a ResNet; a Conv-ReLU net prunes the gradient the
conv passes down, g_{A_I}, §3.2) so that the conv's two backward
convolutions, dW and dx (WGC and AGB, §3.1), touch fewer values:

* **DBTD threshold** (§3.2): model the gradient g as N(0, sigma^2); since
  E|g| = sigma sqrt(2/pi), sigma_hat = sqrt(pi/2) mean|g| (the paper prints
  the factor as sqrt(2/pi), inverted: lesson 4), and the threshold is the
  p-th percentile tau = sigma_hat Phi^-1(p): one pass, no sort (§3.2's
  "O(n)").
* **Stochastic pruning** (Algorithm 1): an entry below tau becomes
  tau*sign(g) with probability |g|/tau, else 0 -- unbiased (§3.3, Lemma 1).

This lesson

1. takes a real gradient at a ResNet conv's output, computes tau and
   prunes it (histogram before / after, tau marked);
2. compares the density after pruning with the Gaussian prediction
   2(1-p) + sqrt(2/pi)(1 - exp(-z^2/2))/z, z = Phi^-1(p);
3. checks Lemma 1 where it matters: the *weight gradient* computed from
   pruned gradients averages to the exact one;
4. trains resnet8 with ``--method gradprune`` against the baseline and
   plots the density per layer over training;
5. times the sparse conv backward against the dense one: when does
   skipping zeros pay on a CPU?

Figures (output folder): ``09_histogram.png``, ``09_density.png``, ``09_sparse_vs_dense.png``.
"""
import math
import shutil
import time

import numpy as np
from matplotlib.figure import Figure

from _lesson import QUICK, Timer, check, finish, grab_on_real_batch, load_data, out_dir, save, section
from minicnn.cost import Ledger
from minicnn.kernels.conv2d import conv2d_backward
from minicnn.kernels.sparse_conv import sparse_conv2d_backward, sparse_crossover
from minicnn.methods import build_methods
from minicnn.methods._dbtd import dbtd_prune, expected_density, ndtri
from minicnn.models import build
from minicnn.training import SGD, Trainer, make_schedule

N_TRAIN, N_TEST, EPOCHS, BATCH = (256, 100, 2, 64) if QUICK else (1024, 500, 4, 64)
LR, SEED, P = 0.05, 0, 0.9
rng = np.random.default_rng(0)



# ---------------------------------------------------------------------------------------------
section("1. A real activation gradient, its DBTD threshold, and Algorithm 1")


ds = load_data(N_TRAIN, N_TEST, seed=0)
model, grab = grab_on_real_batch("layer1.0.conv2", ds, BATCH, SEED)   # one forward and backward on real images
g = grab.dy
mean_abs = float(np.abs(g).mean())
sigma_hat = math.sqrt(math.pi / 2) * mean_abs
print(f"dL/dy at {grab.name}: shape {g.shape}, {g.size:,} values, density {np.count_nonzero(g) / g.size:.3f}")
print(f"  mean|g| = {mean_abs:.3e};  sigma_hat = sqrt(pi/2) mean|g| = {sigma_hat:.3e};  std(g) = {g.std():.3e}")
print(f"  Phi^-1({P}) = {ndtri(P):.6f};  tau = sigma_hat * Phi^-1(p) = {sigma_hat * ndtri(P):.3e}")
pruned, tau, nnz_in, nnz_out = dbtd_prune(g, P, seed=1)
print(f"  pruned: tau = {tau:.3e}; non-zeros {nnz_in:,} -> {nnz_out:,} (density {nnz_out / g.size:.3f}); "
      f"{np.mean(np.abs(g) < tau):.1%} of the entries were below tau (Gaussian: 2p - 1 = {2 * P - 1:.0%})")
small = np.abs(g) < tau
check("every entry below tau became 0 or +-tau",
      set(np.unique(pruned[small])) <= {np.float32(-tau), np.float32(0), np.float32(tau)})
check("every entry at or above tau is unchanged", np.array_equal(pruned[~small], g[~small]))

fig = Figure(figsize=(12, 4.2), layout="constrained")
ax1, ax2 = fig.subplots(1, 2, sharey=True)
lim = 4 * sigma_hat
bins = np.linspace(-lim, lim, 161)
for ax, data, title in ((ax1, g, "before pruning"), (ax2, pruned, f"after pruning (p = {P})")):
    ax.hist(np.clip(data.ravel(), -lim, lim), bins=bins, color="#4c72b0")
    for t in (-tau, tau):
        ax.axvline(t, color="#c44e52", ls="--", lw=1)
    ax.set(yscale="log", xlabel="dL/dy value", title=f"{title}: density {np.count_nonzero(data) / data.size:.2f}")
    ax.grid(alpha=0.3)
ax1.set_ylabel("count (log)")
ax1.text(tau, ax1.get_ylim()[1] * 0.3, "  tau", color="#c44e52")
fig.suptitle(f"DBTD + stochastic pruning of the gradient at {grab.name}'s output (resnet8, one batch)",
             fontweight="bold")
save(fig, "09_histogram.png")

# ---------------------------------------------------------------------------------------------
section("2. Density after pruning: the Gaussian prediction against this gradient")
# For exactly Gaussian g: P(|g| >= tau) = 2(1-p), plus the small entries kept with probability |g|/tau.
kurt = float(np.mean((g / g.std()) ** 4))
print(f"this gradient's kurtosis: {kurt:.1f} (a Gaussian has 3: heavier tails mean more tiny values and "
      f"a smaller mean|g| for the same variance)")
print(f"{'p':>6}{'Gaussian prediction':>21}{'measured':>10}{'Ye et al. ResNet-18 rho_nnz':>29}")
paper = {0.85: 0.36, 0.9: 0.35, 0.95: 0.34, 0.995: 0.31}
measured = {}
for p in (0.85, 0.9, 0.95, 0.995):
    _, _, _, n = dbtd_prune(g, p, seed=2)
    measured[p] = n / g.size
    print(f"{p:>6}{expected_density(p):>21.3f}{measured[p]:>10.3f}{paper[p]:>29.2f}")
check("a larger p prunes more", all(measured[a] >= measured[b] for a, b in [(0.85, 0.9), (0.9, 0.95), (0.95, 0.995)]))
gauss = rng.standard_normal(g.size).astype(np.float32)
_, _, _, n = dbtd_prune(gauss, P, seed=3)
check(f"on Gaussian samples the prediction holds ({n / g.size:.3f})", abs(n / g.size - expected_density(P)) < 0.01)
print("(Table 1 gives one density per model and p, 'the percentage of non-zero gradients over all gradients'"
      "\n (§4.3), of a ResNet-18 trained 300 epochs (§4.2); one batch of one layer of resnet8 at initialization"
      "\n need not match it.)")

# ---------------------------------------------------------------------------------------------
section("3. Lemma 1 where it matters: the weight gradient stays unbiased")
conv = model.leaves()[[l.name for l in model.leaves()].index(grab.name)]
w2 = conv.params["weight"].reshape(conv.out_channels, -1)
geom = conv._geometry()


def dW(dy):
    return conv2d_backward(grab.x, w2, geom, dy.reshape(dy.shape[0], dy.shape[1], -1), True, None)


exact = dW(g)
print(f"{'prunings averaged':>18}{'relative error of mean dW':>27}")
errs = {}
for k in (1, 4, 16, 64) if not QUICK else (1, 4, 16):
    acc = np.zeros_like(exact, dtype=np.float64)
    for i in range(k):
        acc += dW(dbtd_prune(g, P, seed=100 + i)[0])
    errs[k] = float(np.linalg.norm(acc / k - exact) / np.linalg.norm(exact))
    print(f"{k:>18}{errs[k]:>27.4f}")
ks = sorted(errs)
check("the error shrinks like 1/sqrt(k): no bias left over", errs[ks[-1]] < errs[1] / math.sqrt(ks[-1]) * 2)

# ---------------------------------------------------------------------------------------------
section(f"4. Training resnet8 with gradprune (p = {P}) against the baseline, {EPOCHS} epochs")
runs = out_dir() / "09_runs"
shutil.rmtree(runs, ignore_errors=True)


def train(specs, name):
    m = build("resnet8", num_classes=ds.num_classes, seed=SEED)
    ledger = Ledger(m, momentum=True)
    tr = Trainer(m, ds, SGD(m, lr=LR, momentum=0.9, weight_decay=5e-4), make_schedule("constant", LR, EPOCHS),
                 EPOCHS, batch_size=BATCH, methods=build_methods(specs), ledger=ledger, run_dir=str(runs / name),
                 seed=SEED, progress=False)
    with Timer() as t:
        s = tr.fit()
    print(f"  {name}: {t.seconds:.1f} s, final test accuracy {s['final_test_acc']:.1%}")
    return tr, s


base_tr, base = train([], "baseline")
prune_tr, pr = train([f"gradprune:p={P}"], "gradprune")
recs = [h["method_records"]["gradprune"] for h in prune_tr.state.history]
print(f"\n{'epoch':<7}{'density before':>15}{'density after':>15}")
for i, r in enumerate(recs):
    print(f"{i + 1:<7}{r['density_before']:>15.3f}{r['density_after']:>15.3f}")
print(f"\n{'':<26}{'baseline':>14}{'gradprune':>14}")
for label, key in (("backward MACs (dx + dW)", None), ("training MACs", "macs"), ("bytes moved", "bytes"),
                   ("energy (J)", "energy_j")):
    if key is None:
        b = base["macs"]["backward_input"] + base["macs"]["backward_weight"]
        m = pr["macs"]["backward_input"] + pr["macs"]["backward_weight"]
    else:
        b, m = base[key]["total"], pr[key]["total"]
    print(f"{label:<26}{b:>14.4g}{m:>14.4g}")
print(f"{'final test accuracy':<26}{base['final_test_acc']:>14.1%}{pr['final_test_acc']:>14.1%}")
d_after = float(np.mean([r["density_after"] for r in recs]))
print("The MACs of both backward convolutions fall with the density. The bytes fall much less: a sparse tensor\n"
      f"is stored as values + 32-bit indices (8 bytes per non-zero, so at this run's density {d_after:.2f} it is\n"
      f"{8 * d_after:.2f} bytes per entry against 4 for dense fp32: {1 - 2 * d_after:.0%} less, where the MACs fall\n"
      f"{1 - d_after:.0%}), and the DBTD pass reads the gradient and writes the pruned one once more (work a plain\n"
      "run does not do; the ledger counts it as declared extra). With every byte priced at DRAM cost, the energy\n"
      "estimate moves much less than the MACs: at ResNet densities the saving is mostly in arithmetic.")
bw_bytes = pr["bytes"]["backward_weight"] / base["bytes"]["backward_weight"]
bw_macs = pr["macs"]["backward_weight"] / base["macs"]["backward_weight"]
print(f"weight-gradient phase, gradprune / baseline: MACs {bw_macs:.2f}, bytes {bw_bytes:.2f}")
check("the weight-gradient bytes fall less than its MACs (indices, and the dense x it reads)", bw_bytes > bw_macs)
check("pruning lowered the density every epoch", all(r["density_after"] < r["density_before"] for r in recs))
check("the ledger counts fewer weight-gradient MACs (by non-zeros)",
      pr["macs"]["backward_weight"] < base["macs"]["backward_weight"])

fig = Figure(figsize=(12, 4.4), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
names = list(recs[-1]["layers"])
for ep, r in enumerate(recs):
    ax1.plot(range(len(names)), [r["layers"][n]["density_after"] for n in names], "-o", ms=3,
             label=f"after, epoch {ep + 1}")
ax1.plot(range(len(names)), [recs[-1]["layers"][n]["density_before"] for n in names], "k--", label="before")
ax1.set_xticks(range(len(names)), [n.replace("layer", "L") for n in names], rotation=60, fontsize=7)
ax1.set(ylabel="density of dL/dy", ylim=(0, 1.05), title="density per conv (Ye et al.'s rho_nnz)")
ax1.legend(fontsize=8)
ax1.grid(alpha=0.3)
for tr, label in ((base_tr, "baseline"), (prune_tr, f"gradprune p={P}")):
    ax2.plot([h["epoch"] for h in tr.state.history], [100 * h["test_acc"] for h in tr.state.history], "-o",
             label=label)
ax2.set(xlabel="epoch", ylabel="test accuracy (%)", title="accuracy")
ax2.legend(fontsize=8)
ax2.grid(alpha=0.3)
fig.suptitle("resnet8 with stochastic gradient pruning", fontweight="bold")
save(fig, "09_density.png")

# ---------------------------------------------------------------------------------------------
section("5. When does skipping zeros pay on a CPU?")
# The ledger counts MACs by non-zeros: on hardware that skips zeros, that is the saving. A CPU runs the
# dense backward as im2col + one BLAS GEMM; the sparse backward (minicnn.kernels.sparse_conv) is a scatter
# per non-zero. Time both on the same pruned gradient:
cin, cout, hw, nb = (32, 32, 16, 16) if QUICK else (32, 32, 16, 64)
xs = rng.standard_normal((nb, cin, hw, hw), dtype=np.float32)
ws = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32)
full = rng.standard_normal((nb, cout, hw, hw), dtype=np.float32)
dxs = np.empty_like(xs)


def best_of(fn, n=3):
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


t_dense = best_of(lambda: conv2d_backward(xs, ws.reshape(cout, -1), (3, 3, 1, 1, 1, 1),
                                          full.reshape(nb, cout, -1), True, dxs))
dens = (0.01, 0.05, 0.1, 0.2, 0.35, 0.6)
ratios = []
for d in dens:
    dy = np.where(rng.random(full.shape) < d, full, np.float32(0))
    ratios.append(t_dense / best_of(lambda: sparse_conv2d_backward(xs, ws, dy, (1, 1), (1, 1))))
print(f"conv 3x3 {cin}->{cout} on {hw}x{hw}, batch {nb}: dense backward {t_dense * 1e3:.1f} ms")
print("  density      " + "".join(f"{d:>7}" for d in dens))
print("  dense/sparse " + "".join(f"{r:>7.2f}" for r in ratios) + "   (> 1: the sparse path is faster)")
print(f"  the crossover table measured by benchmarks/bench_sparse_conv.py says {sparse_crossover(cin)} for "
      f"C_in = {cin}; gradprune uses it per conv. At ResNet densities (~0.35-0.5 after pruning here, 0.31-0.36 "
      "in Table 1) the dense BLAS path is usually faster on a CPU: the MAC saving is a hardware estimate.")
dy = np.where(rng.random(full.shape) < 0.1, full, np.float32(0))
sw, sx = sparse_conv2d_backward(xs, ws, dy, (1, 1), (1, 1))
dw = conv2d_backward(xs, ws.reshape(cout, -1), (3, 3, 1, 1, 1, 1), dy.reshape(nb, cout, -1), True, dxs)
check("the sparse and dense paths give the same dW and dx",
      np.allclose(sw.reshape(cout, -1), dw, rtol=1e-4, atol=1e-3) and np.allclose(sx, dxs, rtol=1e-4, atol=1e-3))
fig = Figure(figsize=(6.5, 4), layout="constrained")
ax = fig.subplots()
ax.plot(dens, ratios, "-o")
ax.axhline(1, color="k", lw=0.8)
ax.set(xscale="log", xlabel="density of dL/dy", ylabel="dense time / sparse time",
       title=f"sparse vs dense conv backward (3x3 {cin}->{cout}, {hw}x{hw}, this machine)")
ax.grid(alpha=0.3, which="both")
save(fig, "09_sparse_vs_dense.png")
finish()
