"""Lesson 1: layers -- the forward/backward contract, convolution two ways,
gradient checking, and BatchNorm's train/eval semantics.

Run it top to bottom:

    python lessons/01_layers.py

Claims this lesson checks on real tensors (each a ``check``: ``[ok]``/``[FAIL]``;
the lesson exits non-zero if one fails):

1. A layer is ``y = layer.forward(x)`` then ``dx = layer.backward(dy)``;
   backward fills ``layer.grads`` and can be told to do less.
2. A convolution written as seven nested loops and the same convolution
   written as im2col + one matrix multiply (GEMM) give the same numbers; the
   GEMM version is orders of magnitude faster (timed and printed, not a
   check: timings on a shared machine prove nothing).
3. A gradient check (float64, central differences) with a *random* upstream
   gradient confirms every backward. An all-ones upstream gradient is a trap:
   for BatchNorm it makes the true dL/dx exactly zero, so a backward that
   forgot a whole term still "passes".
4. BatchNorm normalizes with the *biased* batch variance in training, stores
   the *unbiased* one in ``running_var``, and uses the running statistics in
   eval mode (PyTorch's semantics).

Figures: ``01_conv_feature_maps.png`` and ``01_gradcheck.png`` in the output
folder (``$MINICNN_LESSONS_OUT``, default ``./lessons_out``).
"""
import math

import numpy as np
from matplotlib.figure import Figure

from _lesson import QUICK, Timer, check, check_close, finish, load_data, save, section
from minicnn.gradcheck import check_layer_gradients, numerical_gradient, rel_error
from minicnn.kernels.im2col import im2col
from minicnn.kernels.reference import conv2d_backward_naive, conv2d_forward_naive
from minicnn.layers import BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU

rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True, linewidth=100)

# ---------------------------------------------------------------------------------------------
section("1. The forward/backward contract")
# A Conv2d holds its trainable tensors in `params` and their gradients in `grads`.
conv = Conv2d(3, 8, kernel_size=3, padding=1, rng=rng)
print(conv)
for name, p in conv.params.items():
    print(f"  params[{name!r}]: shape {p.shape}, dtype {p.dtype}; grads[{name!r}] = {conv.grads[name]}")

x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)      # a batch: N=4, C=3, H=W=16 (NCHW)
y = conv.forward(x)                                               # caches what backward needs
print(f"forward:  x {x.shape} -> y {y.shape}   (output_shape() predicts {conv.output_shape(x.shape)})")
check("output_shape() predicts the forward's shape", conv.output_shape(x.shape) == y.shape)

dy = rng.standard_normal(y.shape).astype(np.float32)             # dL/dy, from the layer above
dx = conv.backward(dy)                                            # returns dL/dx, fills grads
print(f"backward: dy {dy.shape} -> dx {dx.shape}; grads now: "
      + ", ".join(f"{k} {g.shape}" for k, g in conv.grads.items()))
check("backward returns dL/dx of x's shape and fills a gradient per param",
      dx.shape == x.shape and all(conv.grads[k].shape == p.shape for k, p in conv.params.items()))

# Backward consumes the cache: a second backward without a forward is an error, not a silent reuse.
try:
    conv.backward(dy)
    second_backward_refused = False
except RuntimeError as e:
    print(f"second backward -> RuntimeError: {e}")
    second_backward_refused = True
check("a second backward without a forward is refused", second_backward_refused)

# Two flags ask backward for *less* work; the cost ledger (lesson 3) counts exactly what was done.
conv.zero_grad()
conv.needs_input_grad = False         # the first layer of a model: nobody needs dL/dx
conv.requires_grad["bias"] = False    # a frozen parameter: no gradient computed
conv.forward(x)
dx = conv.backward(dy)
print(f"with needs_input_grad=False and bias frozen: dx = {dx}, grads['bias'] = {conv.grads['bias']}, "
      f"grads['weight'] shape {conv.grads['weight'].shape}")
check("needs_input_grad=False and a frozen bias: no dx, no bias gradient, a weight gradient",
      dx is None and conv.grads["bias"] is None and conv.grads["weight"] is not None)

# ---------------------------------------------------------------------------------------------
section("2. Convolution: a naive loop vs im2col + GEMM")
# The definition (cross-correlation, as in PyTorch):
#     y[n, o, ho, wo] = b[o] + sum_{c, i, j} w[o, c, i, j] * x_pad[n, c, ho*s - p + i, wo*s - p + j]
# kernels/reference.py writes exactly this as nested Python loops. The fast layer instead copies
# every 3x3xC input patch into a column ("im2col") and does one matrix multiply:
#     cols = im2col(x)          (N, K, L)   K = C*kh*kw (patch length), L = Ho*Wo (patches)
#     y[n] = W2 @ cols[n]       W2 = weight.reshape(C_out, K): (C_out, K) @ (K, L) = (C_out, L)
N, C, H, W, O = (2, 3, 12, 12, 8) if QUICK else (4, 3, 16, 16, 8)
x = rng.standard_normal((N, C, H, W))
conv = Conv2d(C, O, 3, padding=1, dtype=np.float64, rng=rng)
w, b = conv.params["weight"], conv.params["bias"]

cols = np.empty((N, C * 9, H * W))
im2col(x, 3, 3, 1, 1, 1, 1, cols)
print(f"x {x.shape} -> cols {cols.shape}: K = {C}*3*3 = {C * 9} values per patch, L = {H}*{W} = {H * W} patches")
print(f"weight {w.shape} -> W2 {w.reshape(O, -1).shape};  W2 @ cols[n] has shape {(O, H * W)} = (C_out, Ho*Wo)")
print("column 0 of image 0 (the top-left patch; zeros are the padding), channel 0:")
print(cols[0, :9, 0].reshape(3, 3))

with Timer() as t_naive:
    y_naive = conv2d_forward_naive(x, w, b, stride=1, padding=1)
conv.forward(x)  # warm-up: numba compiles im2col on first use
t_gemm_one = float("inf")
for _ in range(20):  # best of 20: the least disturbed by other programs on the machine
    with Timer() as t_gemm:
        y_gemm = conv.forward(x)
    t_gemm_one = min(t_gemm_one, t_gemm.seconds)
print(f"max |y_naive - y_gemm| = {np.abs(y_naive - y_gemm).max():.2e}   (float64: rounding only)")
# float64 rounding of a K = 27-term dot product: ~1e-15 relative; 1e-10 leaves a wide margin
check_close("forward: naive loops == im2col + GEMM (float64)", y_naive, y_gemm, rtol=1e-10, atol=1e-10)
print(f"time for one forward of {x.shape}: naive loops {t_naive.seconds * 1e3:.1f} ms, "
      f"im2col+GEMM {t_gemm_one * 1e3:.3f} ms (best of 20)  -> {t_naive.seconds / t_gemm_one:.0f}x faster")
# (The loops run one multiply-add per Python bytecode round trip; the GEMM runs compiled, vectorized
# BLAS code over contiguous memory. The gap grows with the layer size.)

# Backward: the same comparison. dW = sum_n dy[n] @ cols[n].T ;  dx = col2im(W2.T @ dy[n]).
dy = rng.standard_normal(y_gemm.shape)
conv.forward(x)
dx_fast = conv.backward(dy)
dx_ref, dw_ref, db_ref = conv2d_backward_naive(x, w, dy, stride=1, padding=1)
print(f"backward, max abs diff: dx {np.abs(dx_fast - dx_ref).max():.2e}, "
      f"dW {np.abs(conv.grads['weight'] - dw_ref).max():.2e}, db {np.abs(conv.grads['bias'] - db_ref).max():.2e}")
for label, fast, ref in (("dx", dx_fast, dx_ref), ("dW", conv.grads["weight"], dw_ref), ("db", conv.grads["bias"], db_ref)):
    check_close(f"backward {label}: naive loops == im2col + GEMM (float64)", ref, fast, rtol=1e-10, atol=1e-10)

# The same on a real image, with hand-made filters, so the output maps mean something.
ds = load_data(20, 10)
img = ds.train_x[0:1].astype(np.float64) / 255.0                  # (1, 3, 32, 32) in [0, 1]
gray = np.array([0.299, 0.587, 0.114])[:, None, None]            # RGB -> luminance weights
sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
filters = {"identity (luminance)": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
           "vertical edges (Sobel x)": sobel_x, "horizontal edges (Sobel y)": sobel_x.T,
           "blur (box 3x3)": np.ones((3, 3)) / 9}
edge = Conv2d(3, len(filters), 3, padding=1, bias=False, dtype=np.float64)
for o, k in enumerate(filters.values()):
    edge.params["weight"][o] = gray * k                            # same 3x3 kernel on luminance
maps = edge.forward(img)[0]
print(f"real image {img.shape} through {len(filters)} hand-made 3x3 filters -> maps {maps.shape}")
print("(in the figure, the bright lines along the image border of the edge maps are the zero padding:"
      " an edge between the image and the zeros around it)")

fig = Figure(figsize=(12, 3.4), layout="constrained")
axes = fig.subplots(1, len(filters) + 1)
axes[0].imshow(ds.train_x[0].transpose(1, 2, 0))
axes[0].set_title(f"input: {ds.classes[ds.train_y[0]]}", fontsize=10)
for ax, (name, m) in zip(axes[1:], zip(filters, maps)):
    lim = np.abs(m).max()
    cmap, vmin = ("gray", None) if m.min() >= 0 else ("RdBu_r", -lim)
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=lim if vmin is not None else None)
    ax.set_title(name, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.75)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Conv2d output maps (one output channel per filter; red > 0 > blue)", fontweight="bold")
save(fig, "01_conv_feature_maps.png")

# ---------------------------------------------------------------------------------------------
section("3. Gradient check, in float64, with a random upstream gradient")
# For an upstream gradient dy, the scalar L(x) = sum(f(x) * dy) has dL/dx = J^T dy, which is what
# backward returns for that dy. Central differences (L(x+h) - L(x-h)) / 2h approximate it with
# error O(h^2); float64 keeps the rounding error (~1e-16 |L| / h) far below that. A correct backward
# agrees to a relative error < 1e-6; a wrong one is typically off by 1e-2 or more.
cases = {
    "Conv2d 3x3 s1 p1": (Conv2d(3, 4, 3, padding=1, dtype=np.float64, rng=rng), (2, 3, 6, 6)),
    "Conv2d 3x3 s2 p1": (Conv2d(2, 3, 3, stride=2, padding=1, dtype=np.float64, rng=rng), (2, 2, 7, 7)),
    "BatchNorm2d (train)": (BatchNorm2d(3, dtype=np.float64), (4, 3, 4, 4)),
    "ReLU": (ReLU(dtype=np.float64), (2, 3, 5, 5)),
    "MaxPool2d 2x2": (MaxPool2d(2, dtype=np.float64), (2, 3, 6, 6)),
    "Linear": (Linear(12, 5, dtype=np.float64, rng=rng), (4, 12)),
}
# BatchNorm's gamma=1, beta=0 at init would hide mistakes in their roles: randomize them.
bn = cases["BatchNorm2d (train)"][0]
bn.params["weight"][:] = rng.uniform(0.5, 1.5, 3)
bn.params["bias"][:] = rng.standard_normal(3)
TOL = 1e-6
results = {}
for name, (layer, shape) in cases.items():
    errs = check_layer_gradients(layer, rng.standard_normal(shape), rng)
    results[name] = errs
    print(f"  {name:<22} " + "  ".join(f"{k}: {v:.1e}" for k, v in errs.items()))
    check(f"gradient check {name}: every relative error < {TOL:g}", max(errs.values()) < TOL)

# Why not an all-ones upstream gradient (i.e. L = sum(y))? For BatchNorm in training mode,
#     sum(y) = sum(gamma * xhat + beta) = gamma * sum(xhat) + n * beta,   and sum(xhat) = 0,
# so L does not depend on x at all: the true dL/dx is exactly zero. A backward that forgot the
# path through the variance (the "- xhat * mean(dy * xhat)" term) also returns zero for dy = 1,
# so the check passes. A random dy exposes it.
print("\nBatchNorm with an all-ones vs a random upstream gradient:")
xb = rng.standard_normal((4, 3, 4, 4)) * 2 + 1
gamma = bn.params["weight"]
bn.train()


def bn_backward(dy, forget_variance_term=False):
    """dx = gamma/std * (dy - mean(dy) - xhat * mean(dy * xhat)), per channel over (N, H, W)."""
    mu = xb.mean(axis=(0, 2, 3), keepdims=True)
    std = np.sqrt(xb.var(axis=(0, 2, 3), keepdims=True) + bn.eps)
    xhat = (xb - mu) / std
    g = gamma[None, :, None, None]
    term = 0.0 if forget_variance_term else xhat * (dy * xhat).mean(axis=(0, 2, 3), keepdims=True)
    return g / std * (dy - dy.mean(axis=(0, 2, 3), keepdims=True) - term)


caught = {}
for label, dyb in (("all-ones", np.ones_like(xb)), ("random  ", rng.standard_normal(xb.shape))):
    numeric = numerical_gradient(bn.forward, xb.copy(), dyb, 1e-5)
    good, buggy = bn_backward(dyb), bn_backward(dyb, forget_variance_term=True)
    print(f"  dy {label}: max|numeric dx| = {np.abs(numeric).max():.1e}; correct backward off by "
          f"{np.abs(good - numeric).max():.1e}; buggy backward off by {np.abs(buggy - numeric).max():.1e}")
    # the correct backward agrees in both cases (absolute: the all-ones dx is zero, a relative error undefined)
    check(f"dy {label.strip()}: the correct BatchNorm backward matches the numbers",
          np.abs(good - numeric).max() < 1e-6 * max(1.0, np.abs(numeric).max()))
    caught[label.strip()] = np.abs(buggy - numeric).max() > 1e-3 * max(1.0, np.abs(numeric).max())
buggy_error = rel_error(buggy, numeric)   # the random-dy case, for the figure
print(f"  relative error of the buggy backward with the random dy: {buggy_error:.1e} (tolerance {TOL:g})")
print("  -> with all ones both backwards match the numbers; only the random dy catches the bug.")
check("an all-ones dy does NOT expose the buggy backward (the trap)", not caught["all-ones"])
check("a random dy exposes it (relative error far above the tolerance)", caught["random"] and buggy_error > 1e3 * TOL,
      f"relative error {buggy_error:.1e}")
# A related fact, true for ANY dy in training mode: the per-channel sum of dL/dx over the batch is
# zero (shifting a whole channel by a constant does not change its normalized output).
bn.forward(xb)
dxb = bn.backward(rng.standard_normal(xb.shape))
print(f"  per-channel sum of dL/dx over the batch (random dy): "
      f"{', '.join(f'{v:.1e}' for v in dxb.sum(axis=(0, 2, 3)))}  (zero up to rounding)")
check_close("per-channel sum of dL/dx over the batch is zero (float64 rounding: < 1e-10 x sum|dx|)",
            np.zeros(3), dxb.sum(axis=(0, 2, 3)), atol=1e-10 * np.abs(dxb).sum())

fig = Figure(figsize=(9, 4.2), layout="constrained")
ax = fig.subplots()
labels, values, colors = [], [], []
for name, errs in results.items():
    for k, v in errs.items():
        labels.append(f"{name}\n{'dL/dx' if k == 'x' else 'dL/d' + k}")
        values.append(max(v, 1e-16))
        colors.append("#4c72b0")
labels.append("BUGGY BatchNorm2d\n(no variance term) dL/dx")
values.append(buggy_error)
colors.append("#c44e52")
ax.bar(range(len(values)), values, color=colors)
ax.axhline(TOL, color="#c44e52", ls="--", label=f"tolerance {TOL:g}")
ax.set_yscale("log")
ax.set_ylim(1e-16, 1)
ax.set_xticks(range(len(values)), labels, rotation=60, ha="right", fontsize=8)
ax.set_ylabel("relative error (backward vs central differences)")
ax.set_title("Gradient check per layer and tensor (float64, random upstream gradient)\n"
             "blue: minicnn's layers; red: a deliberately wrong BatchNorm backward", fontweight="bold")
ax.legend()
ax.grid(axis="y", alpha=0.3)
save(fig, "01_gradcheck.png")

# ---------------------------------------------------------------------------------------------
section("4. BatchNorm: training vs evaluation")
# Training mode, per channel over its n = N*H*W values:
#     mu = mean(x), var = mean((x - mu)^2)  (BIASED: divide by n)   y = gamma * (x - mu)/sqrt(var + eps) + beta
#     running_mean <- 0.9 running_mean + 0.1 mu
#     running_var  <- 0.9 running_var  + 0.1 var * n/(n-1)          (UNBIASED: divide by n - 1)
# Eval mode uses running_mean / running_var instead of the batch statistics.
bn = BatchNorm2d(2, dtype=np.float64)
xs = rng.standard_normal((8, 2, 3, 3)) * np.array([2.0, 0.5])[None, :, None, None] + np.array([3.0, -1.0])[None, :, None, None]
n = 8 * 3 * 3
y = bn.forward(xs)
mu = xs.mean(axis=(0, 2, 3))
var_b, var_u = xs.var(axis=(0, 2, 3)), xs.var(axis=(0, 2, 3), ddof=1)
print(f"batch mean {mu}, biased var {var_b}, unbiased var {var_u} (n = {n})")
print(f"train-mode output: per-channel mean {y.mean(axis=(0, 2, 3))}, biased var {y.var(axis=(0, 2, 3))}  "
      "(= var/(var+eps): normalized with the biased variance)")
print(f"running_mean = 0.1 * mu                      = {bn.buffers['running_mean']}  (expected {0.1 * mu})")
print(f"running_var  = 0.9 * 1 + 0.1 * unbiased var = {bn.buffers['running_var']}  (expected {0.9 + 0.1 * var_u})")
check_close("train mode normalizes with the BIASED variance: output var = var/(var+eps)",
            var_b / (var_b + bn.eps), y.var(axis=(0, 2, 3)), rtol=1e-9)
check_close("train-mode output has mean 0 per channel", np.zeros(2), y.mean(axis=(0, 2, 3)), atol=1e-12)
check_close("running_mean = 0.1 * batch mean", 0.1 * mu, bn.buffers["running_mean"], rtol=1e-12)
check_close("running_var = 0.9 + 0.1 * UNBIASED batch var", 0.9 + 0.1 * var_u, bn.buffers["running_var"], rtol=1e-12)

# In eval mode the output of a sample no longer depends on the rest of the batch.
bn.eval()
y_eval = bn.forward(xs)
print(f"eval-mode output right after ONE training step: mean {y_eval.mean(axis=(0, 2, 3))} "
      "(running stats are still mostly their init values 0 and 1)")
bn.train()
for _ in range(60):                           # many training batches from the same distribution
    bn.forward(rng.standard_normal((8, 2, 3, 3)) * np.array([2.0, 0.5])[None, :, None, None]
               + np.array([3.0, -1.0])[None, :, None, None])
bn.eval()
y_eval = bn.forward(xs)
print(f"after 60 more training batches: running_mean {bn.buffers['running_mean']}, running_var "
      f"{bn.buffers['running_var']}\n  eval-mode output mean {y_eval.mean(axis=(0, 2, 3))}, "
      f"var {y_eval.var(axis=(0, 2, 3))} (close to 0 and 1 now)")
# The running mean tracks the true means (3, -1) with std ~ sigma * sqrt(0.1/1.9) / sqrt(72) ~ 0.03 sigma; xs's own
# batch mean is off by ~ sigma/sqrt(72) ~ 0.12 sigma. So |eval mean| < 0.5 and eval var in [0.5, 2] have
# a margin of several standard deviations.
check("eval mode uses the running statistics: output mean near 0 and var near 1 per channel",
      np.all(np.abs(y_eval.mean(axis=(0, 2, 3))) < 0.5) and np.all(np.abs(np.log(y_eval.var(axis=(0, 2, 3)))) < math.log(2)))
bn.train()
single = bn.forward(xs[:2])[0]
whole = bn.forward(xs)[0]
bn.eval()
eval_diff = np.abs(bn.forward(xs[:2])[0] - bn.forward(xs)[0]).max()
print(f"sample 0, train mode: batch of 2 vs batch of 8 differ by {np.abs(single - whole).max():.3f}; "
      f"eval mode: {eval_diff:.1e}")
check("train mode: a sample's output depends on the rest of the batch", np.abs(single - whole).max() > 1e-3)
check("eval mode: it does not (bit for bit)", eval_diff == 0.0)
print("\nDone. Next: lessons/02_training_sanity.py")
finish()
