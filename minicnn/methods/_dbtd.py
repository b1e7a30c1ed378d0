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
call) and makes entry i's uniform with a counter-based hash: Wellons'
``lowbias32`` integer hash H of the counter scrambled by two keys from the
seed, ``h = H((i * k_mul) XOR k_xor)`` (k_xor: the seed's low 32 bits; k_mul:
bits 32-62, shifted up and made odd, so ``i -> i * k_mul`` is a bijection of
uint32), whose top 24 bits give ``u = (h >> 8) / 2^24`` (exact in float32).
The multiplier is there so that two calls' streams are not shifted copies of
one sequence (as ``H(i + k)``'s would be): with different multipliers they
visit H's inputs in different orders (tests/test_dbtd.py checks nearby
seeds). Until 2026-12-03 the hash had two rounds, ``H(H(i XOR k_lo) + k_hi)``:
4.3 ns per entry on one thread against 2.5 now; the uniforms' histogram,
Lemma 1 and the density oracle pass with either. Reproducible, independent
of the thread count, and the
same in the NumPy reference (:func:`uniforms_naive`). Why 32-bit: the hash
is computed for *every* entry (a branch on ``|g| < tau`` per entry costs more
than the hash it saves, and a select-only loop vectorizes), so its price is
the kernel's; 32-bit multiplies vectorize 8 to an AVX2 register, where the
earlier SplitMix64 (64-bit multiplies, emulated on AVX2) made the pruning
pass ~2.5x slower (``docs/measurements/method_overheads_gradprune.md``).
The price: the keep probability |g|/tau is resolved to multiples of 2^-24
(float32's own precision), so E[pruned] = g holds to within tau * 2^-24
per entry, far below what any training run or test can see. Tensors of
2^32 entries or more are refused (the counter is 32-bit).

Kernel and reference (:func:`prune_naive` with :func:`uniforms_naive`) are
held equal *exactly*, bit for bit, given the same seed
(tests/test_dbtd.py::test_kernel_equals_reference, random shapes, dtypes,
p and seeds); the statistics (Lemma 1's unbiasedness and second moment,
the Gaussian density oracle, the uniforms' histogram) are tested in
distribution on the kernel.

**Precision.** tau is computed in float64 and rounded once to g's dtype;
the comparisons ``|g| < tau`` and ``|g| > tau * u`` run in g's dtype (for
float32 g: 8 lanes per AVX2 instruction), and the pruned small entries are
``+-tau`` in that dtype.

**Determinism.** ``sum |g|`` is accumulated per fixed-size chunk in float64
and the chunk sums added in chunk order, so tau does not depend on how many
threads ran.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_CHUNK = 32768  # elements per parallel task (fixed: tau's summation order depends on it)


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
_H1 = np.uint32(0x7FEB352D)
_H2 = np.uint32(0x846CA68B)
_UNIT24 = 1.0 / 16777216.0   # 2**-24


@njit(cache=True, inline="always")
def _lowbias32(x):
    """Wellons' lowbias32 integer hash (a bijection of uint32): xorshift-multiply, twice, xorshift."""
    x = np.uint32(x ^ (x >> np.uint32(16)))
    x = np.uint32(x * _H1)
    x = np.uint32(x ^ (x >> np.uint32(15)))
    x = np.uint32(x * _H2)
    return np.uint32(x ^ (x >> np.uint32(16)))


@njit(cache=True, inline="always")
def _uniform24(k_xor, k_mul, i):
    """Entry i's uniform as an integer in [0, 2^24): the top 24 bits of H((i * k_mul) ^ k_xor), k_mul odd."""
    h = _lowbias32(np.uint32(np.uint32(np.uint32(i) * k_mul) ^ k_xor))
    return np.int32(h >> np.uint32(8))


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _abs_sum(g):
    """(sum |g| in float64, number of non-zeros), in a fixed order whatever the thread count.

    Each chunk's float64 sum may be reassociated (fastmath 'reassoc': it vectorizes, about 4x faster); the chunks,
    and the order they are added in, depend on the size alone.

    The loops run over a slice of the chunk, indexed from 0, not over ``range(start, stop)`` of the whole
    array: an index numba cannot prove non-negative gets a negative-index check on every load, and that
    loop ran 3x slower (2.3 against 0.8 ms per 2 M float32 entries from memory, 2 threads; 2026-12-07).
    """
    n = g.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    sums = np.zeros(nchunks)
    nnz = np.zeros(nchunks, dtype=np.int64)
    for k in prange(nchunks):
        part = g[k * _CHUNK:min(k * _CHUNK + _CHUNK, n)]      # chunk k: entries k * _CHUNK onwards
        s = 0.0
        c = 0
        for j in range(part.size):
            v = abs(np.float64(part[j]))
            s += v
            c += v != 0.0
        sums[k] = s
        nnz[k] = c
    total = 0.0
    count = 0
    for k in range(nchunks):
        total += sums[k]
        count += nnz[k]
    return total, count


@njit(cache=True)
def _chunk_uniforms(k_xor, k_mul, first, u):
    """u[j] = the uniform (an integer in [0, 2^24)) of flat entry first + j, for the chunk's entries."""
    base = np.uint32(first)
    for j in range(u.size):
        u[j] = _uniform24(k_xor, k_mul, np.uint32(base + np.uint32(j)))


@njit(cache=True)
def _prune_chunk(g, tau, unit, k_xor, k_mul, out, first):
    """Algorithm 1 on the chunk g into out (tau, unit in g's dtype); returns the non-zeros written.

    ``g`` and ``out`` are the chunk's slices; ``first`` is the flat index of its first entry (the uniforms
    are numbered by flat index, so that the stream does not depend on the chunking).

    Two loops: the chunk's uniforms first (a loop of integer hashing alone vectorizes 8 lanes wide), then
    the selection. As one loop, the compiler vectorized it 4 lanes wide and it ran 2x slower (42 against
    20 us per 32,768 entries; 2026-12-07). The selection is written without branches (selects only): the
    keep/drop outcome is a coin flip, and a mispredicted branch per entry made this loop 5x slower.
    """
    u = np.empty(g.size, np.int32)          # 128 KiB at most (_CHUNK entries): stays in cache
    _chunk_uniforms(k_xor, k_mul, first, u)
    zero = unit - unit      # 0 in g's dtype
    c = 0
    for j in range(g.size):
        v = g[j]
        a = abs(v)
        keep = a > tau * (np.float32(u[j]) * unit)       # probability |g| / tau
        signed_tau = tau if v > zero else -tau
        r = (signed_tau if keep else zero) if a < tau else v
        out[j] = r
        c += r != zero
    return c


@njit(parallel=True, cache=True)
def _prune(g, tau, unit, k_xor, k_mul, out):
    """Algorithm 1 on flat g into flat out (may be g itself), in fixed chunks; returns the non-zeros of out.

    (Each chunk is handed over as slices, for the reason given in :func:`_abs_sum`: 1.4x faster.)
    """
    n = g.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    nnz = np.zeros(nchunks, dtype=np.int64)
    for k in prange(nchunks):
        start = k * _CHUNK
        stop = min(start + _CHUNK, n)
        nnz[k] = _prune_chunk(g[start:stop], tau, unit, k_xor, k_mul, out[start:stop], start)
    count = 0
    for k in range(nchunks):
        count += nnz[k]
    return count


def _keys(seed: int):
    """The hash's keys from the seed: (k_xor, k_mul) = (bits 0-31, bits 32-62 shifted up and made odd).

    k_mul is odd, so ``i -> i * k_mul`` is a bijection of uint32; distinct seeds below 2^63 (what the method
    draws) give distinct key pairs (bit 63 is dropped).
    """
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return np.uint32(seed & 0xFFFFFFFF), np.uint32((((seed >> 32) << 1) | 1) & 0xFFFFFFFF)


def dbtd_prune(g: np.ndarray, p: float, seed: int, out: np.ndarray | None = None):
    """Prune activation gradient ``g`` (any shape) at percentile ``p``; returns (pruned, tau, nnz_in, nnz_out).

    Two passes over g, no sort, no extra memory: the sum of |g| (and g's
    non-zeros), then tau = sqrt(pi/2) * mean|g| * Phi^-1(p) and the pruning
    (which counts the non-zeros it writes). ``seed``: a 64-bit integer (draw
    it from the method's Generator: ``int(rng.integers(2**63))``). ``out``
    may be ``g`` (in place). ``tau`` is returned as computed, in float64.
    """
    if not 0.5 <= p < 1.0:
        raise ValueError(f"p must be in [0.5, 1), got {p}")
    g = np.ascontiguousarray(g)
    if out is None:
        out = np.empty_like(g)
    elif out.shape != g.shape or out.dtype != g.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {g.dtype} array of shape {g.shape}")
    if g.size >= 2**32:
        raise ValueError(f"dbtd_prune: {g.size} entries; at most 2**32 - 1 (the uniforms' counter is 32-bit)")
    if g.size == 0:
        return out, 0.0, 0, 0
    flat, flat_out = g.reshape(-1), out.reshape(-1)
    total, nnz_in = _abs_sum(flat)
    tau = math.sqrt(math.pi / 2.0) * (total / g.size) * ndtri(p)
    k_xor, k_mul = _keys(seed)
    dt = g.dtype.type
    nnz_out = _prune(flat, dt(tau), dt(_UNIT24), k_xor, k_mul, flat_out)
    return out, float(tau), int(nnz_in), int(nnz_out)


# -- NumPy references -------------------------------------------------------------------------
def _lowbias32_naive(x):
    x = x ^ (x >> np.uint32(16))
    x = x * _H1
    x = x ^ (x >> np.uint32(15))
    x = x * _H2
    return x ^ (x >> np.uint32(16))


def uniforms_naive(seed: int, n: int) -> np.ndarray:
    """The kernel's uniforms for entries 0..n-1, as float32 multiples of 2^-24 (NumPy uint32 arithmetic, wrapping)."""
    k_xor, k_mul = _keys(seed)
    i = np.arange(n, dtype=np.uint32)
    h = _lowbias32_naive((i * k_mul) ^ k_xor)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(_UNIT24)


def dbtd_tau_naive(g: np.ndarray, p: float) -> float:
    """tau = sqrt(pi/2) * mean|g| * Phi^-1(p) (NumPy's summation order: equal to the kernel's to ~1e-15)."""
    return math.sqrt(math.pi / 2.0) * float(np.mean(np.abs(np.asarray(g, np.float64)))) * ndtri(p)


def prune_naive(g: np.ndarray, tau: float, u: np.ndarray) -> np.ndarray:
    """Algorithm 1 with given uniforms u (same shape as g, or flat), in g's dtype (tau rounded to it once)."""
    t = g.dtype.type(tau)
    a = np.abs(g)
    u = np.asarray(u).reshape(g.shape).astype(g.dtype)
    small = a < t
    keep = a > t * u
    return np.where(small, np.where(keep, np.where(g > 0, t, -t), g.dtype.type(0)), g)
