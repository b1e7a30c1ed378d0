"""DBTD threshold and stochastic pruning of activation gradients (Ye et al. 2019, §3.2, Algorithm 1).

**Threshold (Distribution Based Threshold Determination).** Model the n
entries of an activation gradient g as samples of N(0, sigma^2). Then::

    E|g| = 2 * int_0^inf x exp(-x^2 / (2 sigma^2)) / (sigma sqrt(2 pi)) dx
         = 2 sigma^2 / (sigma sqrt(2 pi))  =  sigma * sqrt(2 / pi)

so ``sigma_hat = sqrt(pi / 2) * mean|g|`` is an unbiased estimator of sigma.
(The paper prints ``sigma_hat = (1/n) sqrt(2/pi) sum|g_i|``, the factor
inverted: with that, E[sigma_hat] = (2/pi) sigma, not sigma.) The threshold
is the p-th percentile of the fitted N(0, sigma_hat^2)::

    tau = sigma_hat * Phi^-1(p)

so that P(|g| < tau) = 2p - 1 of the entries fall below it (the paper's
"(2p - 100)%" with p in percent; its printed "tau = (2p - 100)/100" is
garbled). One pass over g (a sum of |g|), no sort. Phi^-1 is Wichura's
AS241 rational approximation (:func:`ndtri`, about 1e-16 relative error;
the same algorithm as Python's ``statistics.NormalDist.inv_cdf``), written
out here so numba can compile it (no scipy).

**Stochastic pruning (Algorithm 1).** For every entry with ``|g_i| < tau``,
draw ``r ~ U[0, 1)``: if ``|g_i| > tau * r`` the entry becomes
``tau * sign(g_i)`` (probability ``|g_i| / tau``), else 0. Larger entries
are unchanged. So ``E[pruned] = g`` entry by entry (§3.3, Lemma 1, Eq. 7) and
``E[pruned^2] = tau |g| <= tau^2`` for the small ones (within Lemma 1's bound,
Eq. 8: ``E[y^2] <= tau^2 + E[x^2]``).

For g ~ N(0, sigma^2) exactly, the expected density after pruning is::

    P(|g| >= tau) + E[|g|/tau ; |g| < tau] = 2(1 - p) + sqrt(2/pi) (1 - exp(-z^2/2)) / z,   z = Phi^-1(p)

(0.62 / 0.55 / 0.46 / 0.31 at p = 0.85 / 0.9 / 0.95 / 0.995): tests/test_dbtd.py checks it.

**Random numbers.** One uniform per small entry; drawing them as an array
from a Generator would mean ~40 M draws (and 320 MB written and read) per
ResNet-20 step at batch 128, as much time as the convolutions. So the kernel
takes one 64-bit ``seed`` (the method draws it from its own Generator per
call) and makes entry i's uniform with a counter-based hash (SplitMix64 of
``seed + (i + 1) * golden``, the top 53 bits): reproducible, independent of
the thread count, and the same in the NumPy reference
(:func:`uniforms_naive`).

**Determinism.** ``sum |g|`` is accumulated per fixed-size chunk in float64
and the chunk sums added in chunk order, so tau does not depend on how many
threads ran.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_CHUNK = 32768  # elements per parallel task (fixed: tau's summation order depends on it)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


# -- Phi^-1 ---------------------------------------------------------------------------------
@njit(cache=True)
def ndtri(p):
    """Phi^-1(p), the standard normal quantile, for 0 < p < 1 (Wichura 1988, AS241, PPND16).

    Three rational approximations: the central one for |p - 0.5| <= 0.425,
    then two tails in r = sqrt(-log(min(p, 1 - p))). Returns -inf / inf at
    p = 0 / 1 and NaN outside [0, 1].
    """
    if not (0.0 <= p <= 1.0):
        return np.nan
    if p == 0.0:
        return -np.inf
    if p == 1.0:
        return np.inf
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        num = (((((((2.5090809287301226727e+3 * r + 3.3430575583588128105e+4) * r
                    + 6.7265770927008700853e+4) * r + 4.5921953931549871457e+4) * r
                  + 1.3731693765509461125e+4) * r + 1.9715909503065514427e+3) * r
                + 1.3314166789178437745e+2) * r + 3.3871328727963666080e+0)
        den = (((((((5.2264952788528545610e+3 * r + 2.8729085735721942674e+4) * r
                    + 3.9307895800092710610e+4) * r + 2.1213794301586595867e+4) * r
                  + 5.3941960214247511077e+3) * r + 6.8718700749205790830e+2) * r
                + 4.2313330701600911252e+1) * r + 1.0)
        return q * num / den
    r = p if q < 0.0 else 1.0 - p
    r = math.sqrt(-math.log(r))
    if r <= 5.0:
        r -= 1.6
        num = (((((((7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r
                    + 2.41780725177450611770e-1) * r + 1.27045825245236838258e+0) * r
                  + 3.64784832476320460504e+0) * r + 5.76949722146069140550e+0) * r
                + 4.63033784615654529590e+0) * r + 1.42343711074968357734e+0)
        den = (((((((1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r
                    + 1.51986665636164571966e-2) * r + 1.48103976427480074590e-1) * r
                  + 6.89767334985100004550e-1) * r + 1.67638483018380384940e+0) * r
                + 2.05319162663775882187e+0) * r + 1.0)
    else:
        r -= 5.0
        num = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r
                    + 1.24266094738807843860e-3) * r + 2.65321895265761230930e-2) * r
                  + 2.96560571828504891230e-1) * r + 1.78482653991729133580e+0) * r
                + 5.46378491116411436990e+0) * r + 6.65790464350110377720e+0)
        den = (((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r
                    + 1.84631831751005468180e-5) * r + 7.86869131145613259100e-4) * r
                  + 1.48753612908506148525e-2) * r + 1.36929880922735805310e-1) * r
                + 5.99832206555887937690e-1) * r + 1.0)
    x = num / den
    return -x if q < 0.0 else x


def expected_density(p: float) -> float:
    """Density after pruning for exactly Gaussian g: 2(1 - p) + sqrt(2/pi)(1 - exp(-z^2/2))/z, z = Phi^-1(p)."""
    z = ndtri(p)
    return 2.0 * (1.0 - p) + math.sqrt(2.0 / math.pi) * (1.0 - math.exp(-z * z / 2.0)) / z


# -- the kernel -------------------------------------------------------------------------------
@njit(cache=True)
def _uniform(seed, i):
    """Entry i's uniform in [0, 1): SplitMix64(seed + (i + 1) * golden), top 53 bits."""
    z = seed + (np.uint64(i) + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * _TO_UNIT


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _abs_sum(g):
    """(sum |g| in float64, number of non-zeros), in a fixed order whatever the thread count.

    Each chunk's float64 sum may be reassociated (fastmath 'reassoc': it vectorizes, about 4x faster); the chunks,
    and the order they are added in, depend on the size alone.
    """
    n = g.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    sums = np.zeros(nchunks)
    nnz = np.zeros(nchunks, dtype=np.int64)
    for k in prange(nchunks):
        start = k * _CHUNK
        stop = min(start + _CHUNK, n)
        s = 0.0
        c = 0
        for i in range(start, stop):
            v = abs(np.float64(g[i]))
            s += v
            if v != 0.0:
                c += 1
        sums[k] = s
        nnz[k] = c
    total = 0.0
    count = 0
    for k in range(nchunks):
        total += sums[k]
        count += nnz[k]
    return total, count


@njit(parallel=True, cache=True)
def _prune(g, tau, seed, out):
    """Algorithm 1 on flat g into flat out (may be g itself); returns the non-zeros of out."""
    n = g.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    nnz = np.zeros(nchunks, dtype=np.int64)
    for k in prange(nchunks):
        start = k * _CHUNK
        stop = min(start + _CHUNK, n)
        c = 0
        for i in range(start, stop):
            # written without branches (selects only): the keep/drop outcome is a coin flip,
            # and a mispredicted branch per entry made this loop 5x slower
            v = np.float64(g[i])
            a = abs(v)
            keep = a > tau * _uniform(seed, i)        # probability |g| / tau
            signed_tau = tau if v > 0 else -tau
            r = (signed_tau if keep else 0.0) if a < tau else v
            out[i] = r                                # cast to out's dtype on store
            c += r != 0.0
        nnz[k] = c
    count = 0
    for k in range(nchunks):
        count += nnz[k]
    return count


@njit(cache=True)
def dbtd_prune_kernel(g, z, seed, out):
    """Threshold and prune flat ``g`` into flat ``out`` (may be g): returns (tau, nnz before, nnz after).

    tau = sqrt(pi/2) * mean|g| * z, with z = Phi^-1(p). Two passes over g
    (the sum of |g|, then the pruning), no sort, no extra memory.
    """
    n = g.size
    if n == 0:
        return 0.0, 0, 0
    total, nnz_in = _abs_sum(g)
    tau = math.sqrt(math.pi / 2.0) * (total / n) * z
    nnz_out = _prune(g, tau, seed, out)
    return tau, nnz_in, nnz_out


def dbtd_prune(g: np.ndarray, p: float, seed: int, out: np.ndarray | None = None):
    """Prune activation gradient ``g`` (any shape) at percentile ``p``; returns (pruned, tau, nnz_in, nnz_out).

    ``seed``: a 64-bit integer (draw it from the method's Generator:
    ``int(rng.integers(2**63))``). ``out`` may be ``g`` (in place).
    """
    if not 0.5 <= p < 1.0:
        raise ValueError(f"p must be in [0.5, 1), got {p}")
    g = np.ascontiguousarray(g)
    if out is None:
        out = np.empty_like(g)
    elif out.shape != g.shape or out.dtype != g.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {g.dtype} array of shape {g.shape}")
    tau, nnz_in, nnz_out = dbtd_prune_kernel(g.reshape(-1), ndtri(p), np.uint64(seed), out.reshape(-1))
    return out, float(tau), int(nnz_in), int(nnz_out)


# -- NumPy references -------------------------------------------------------------------------
def uniforms_naive(seed: int, n: int) -> np.ndarray:
    """The kernel's uniforms for entries 0..n-1 (SplitMix64 in NumPy uint64 arithmetic, wrapping)."""
    z = np.uint64(seed) + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * _TO_UNIT


def dbtd_tau_naive(g: np.ndarray, p: float) -> float:
    """tau = sqrt(pi/2) * mean|g| * Phi^-1(p) (NumPy's summation order: equal to the kernel's to ~1e-15)."""
    return math.sqrt(math.pi / 2.0) * float(np.mean(np.abs(np.asarray(g, np.float64)))) * ndtri(p)


def prune_naive(g: np.ndarray, tau: float, u: np.ndarray) -> np.ndarray:
    """Algorithm 1 with given uniforms u (same shape as g, or flat)."""
    a = np.abs(g.astype(np.float64))
    u = np.asarray(u, np.float64).reshape(g.shape)
    small = a < tau
    keep = a > tau * u
    tau_t = g.dtype.type(tau)
    return np.where(small, np.where(keep, np.where(g > 0, tau_t, -tau_t), g.dtype.type(0)), g)
