"""DBTD threshold and stochastic pruning (Ye et al. §3.2, Algorithm 1, Lemma 1)."""
import math
import statistics

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.methods._dbtd import (dbtd_prune, dbtd_tau_naive, expected_density, ndtri, prune_naive,
                                   uniforms_naive)

# Phi^-1 at a few probabilities, to 16 digits (tables of the normal distribution / mpmath)
KNOWN = {0.5: 0.0, 0.84134474606854293: 1.0, 0.9: 1.2815515655446004, 0.95: 1.6448536269514722,
         0.975: 1.9599639845400540, 0.995: 2.5758293035489004, 0.999: 3.0902323061678132,
         1e-10: -6.3613409024040557, 0.025: -1.9599639845400540, 0.3: -0.52440051270804066}


@pytest.mark.parametrize("p", sorted(KNOWN))
def test_ndtri_known_quantiles(p):
    assert ndtri(p) == pytest.approx(KNOWN[p], rel=1e-9, abs=1e-12)


def test_ndtri_inverts_the_cdf_across_all_three_branches():
    for p in np.concatenate([np.linspace(0.001, 0.999, 401), [1e-300, 1e-50, 1e-12, 1e-5, 0.07, 0.93]]):
        z = ndtri(p)
        back = 0.5 * math.erfc(-z / math.sqrt(2.0))          # Phi(z)
        assert back == pytest.approx(p, rel=1e-12), p
        assert z == pytest.approx(statistics.NormalDist().inv_cdf(p), rel=1e-12, abs=1e-15)
    assert ndtri(0.0) == -np.inf and ndtri(1.0) == np.inf and np.isnan(ndtri(1.5))


@pytest.mark.parametrize("sigma", [1e-4, 1.0, 30.0])
def test_tau_on_gaussian_samples_of_known_sigma(sigma):
    g = np.random.default_rng(0).normal(0.0, sigma, 1_000_000)
    _, tau, _, _ = dbtd_prune(g, 0.9, 1)
    # sigma_hat has relative sd sqrt(pi/2 - 1)/sqrt(n) = 7.6e-4: 5 sd = 0.4%
    assert tau == pytest.approx(sigma * 1.2815515655446004, rel=4e-3)
    assert tau == pytest.approx(dbtd_tau_naive(g, 0.9), rel=1e-12)
    # the fraction below tau is about 2p - 1
    assert np.mean(np.abs(g) < tau) == pytest.approx(0.8, abs=4e-3)


@pytest.mark.parametrize("p,printed", [(0.85, 0.62), (0.9, 0.55), (0.95, 0.46), (0.995, 0.31)])
def test_gaussian_density_oracle(p, printed):
    assert expected_density(p) == pytest.approx(printed, abs=0.005)
    g = np.random.default_rng(1).standard_normal(1_000_000).astype(np.float32)
    pruned, tau, nnz_in, nnz_out = dbtd_prune(g, p, 7)
    assert nnz_in == g.size
    assert nnz_out == np.count_nonzero(pruned)
    # binomial sd <= 0.0005 plus the tau estimate's wobble: 0.004 is > 5 sd
    assert nnz_out / g.size == pytest.approx(expected_density(p), abs=0.004)


def test_value_set_and_large_entries_unchanged():
    g = np.random.default_rng(2).standard_normal((8, 4, 9, 9)).astype(np.float32)
    g[0, 0, 0, :3] = 0.0
    pruned, tau, nnz_in, _ = dbtd_prune(g, 0.9, 3)
    big = np.abs(g) >= tau
    np.testing.assert_array_equal(pruned[big], g[big])                       # unchanged, bit for bit
    small = pruned[~big]
    assert set(np.unique(small)) == {np.float32(-tau), np.float32(0), np.float32(tau)}
    assert np.all(np.sign(pruned[pruned != 0]) == np.sign(g[pruned != 0]))   # the sign is never flipped
    assert nnz_in == g.size - 3
    assert np.all(pruned[0, 0, 0, :3] == 0)


def test_unbiased_lemma_1():
    """E[prune(g)] = g entry by entry: 4000 independent prunings of the same 500 values."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal(500)
    M = 4000
    pruned, tau, _, _ = dbtd_prune(np.tile(base, M), 0.95, 11)   # same mean|g|, so the same tau for every copy
    mean = pruned.reshape(M, -1).mean(axis=0)
    a = np.abs(base)
    var = np.where(a < tau, tau * a - a * a, 0.0)                   # Var = tau|g| - g^2 below tau, 0 above
    small = a < tau
    assert small.sum() > 400
    zscores = (mean[small] - base[small]) / np.sqrt(var[small] / M)
    assert np.abs(zscores).max() < 5.0
    assert abs(zscores.mean()) < 5.0 / math.sqrt(small.sum())
    assert 0.8 < np.mean(zscores ** 2) < 1.2
    cols = pruned.reshape(M, -1)
    assert np.all(cols[:, ~small] == base[~small])                    # every copy, unchanged
    # Eq. 8: E[prune(g)^2] = tau |g| <= tau^2 + g^2
    second = (pruned.reshape(M, -1) ** 2).mean(axis=0)
    q = a[small] / tau                                                # y^2 = tau^2 * Bernoulli(q)
    sd = tau * tau * np.sqrt(q * (1 - q) / M)
    assert np.all(np.abs(second[small] - tau * a[small]) <= 5 * sd + 1e-12)


def test_uniforms_are_uniform_and_seeded():
    u = uniforms_naive(5, 200_000)
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    chi2 = ((counts - 10_000) ** 2 / 10_000).sum()
    assert chi2 < 60                      # chi^2 with 19 dof: P(> 60) ~ 4e-6
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.015
    assert not np.array_equal(u, uniforms_naive(6, 200_000))


@pytest.mark.parametrize("other", [1, 2**32, 2**32 + 1, 12345], ids=["xor key +1", "multiplier", "both", "any"])
def test_streams_of_nearby_seeds_are_not_shifted_copies(other):
    """Two calls' uniforms share (almost) no value at any small lag: a stream H(i + k) would repeat its
    neighbour's shifted by the key difference; H((i * k_mul) ^ k_xor) must not (nor collide for seeds < 2^63)."""
    seed = 2**40 + 777
    a, b = uniforms_naive(seed, 50_000), uniforms_naive(seed + other, 50_000)
    for lag in range(0, 40):
        same = np.mean(a[lag:] == b[:b.size - lag]) if lag else np.mean(a == b)
        assert same < 1e-3, f"lag {lag}: {same:.1%} equal"
        same = np.mean(b[lag:] == a[:a.size - lag]) if lag else same
        assert same < 1e-3
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.03


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=4), st.integers(0, 2**63 - 1),
       st.sampled_from([np.float32, np.float64]), st.sampled_from([0.5, 0.85, 0.99]), st.integers(0, 2**31))
def test_kernel_equals_reference(shape, seed, dtype, p, data_seed):
    g = np.random.default_rng(data_seed).standard_normal(shape).astype(dtype)
    g[g > 1.5] = 0.0
    pruned, tau, nnz_in, nnz_out = dbtd_prune(g, p, seed)
    assert tau == pytest.approx(dbtd_tau_naive(g, p), rel=1e-12, abs=1e-300)
    np.testing.assert_array_equal(pruned, prune_naive(g, tau, uniforms_naive(seed, g.size)))
    assert (nnz_in, nnz_out) == (np.count_nonzero(g), np.count_nonzero(pruned))
    assert pruned.dtype == g.dtype


def test_kernel_equals_reference_across_many_chunks():
    """Several parallel chunks (the property test's shapes fit in one): each chunk numbers its uniforms by
    flat index, so the result is the reference's, whose stream has no chunks."""
    g = np.random.default_rng(11).standard_normal(3 * 32768 + 1001).astype(np.float32)
    g[::7] = 0.0
    pruned, tau, nnz_in, nnz_out = dbtd_prune(g, 0.9, 2**40 + 3)
    assert tau == pytest.approx(dbtd_tau_naive(g, 0.9), rel=1e-12)
    np.testing.assert_array_equal(pruned, prune_naive(g, tau, uniforms_naive(2**40 + 3, g.size)))
    assert (nnz_in, nnz_out) == (np.count_nonzero(g), np.count_nonzero(pruned))


def test_in_place_all_zero_and_thread_count_independent():
    g = np.random.default_rng(4).standard_normal(300_000).astype(np.float32)
    want, tau, _, _ = dbtd_prune(g, 0.9, 99)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one, tau1, _, _ = dbtd_prune(g, 0.9, 99)
    finally:
        numba.set_num_threads(old)
    assert tau1 == tau
    np.testing.assert_array_equal(one, want)
    h = g.copy()
    dbtd_prune(h, 0.9, 99, out=h)
    np.testing.assert_array_equal(h, want)
    z, tau, nnz_in, nnz_out = dbtd_prune(np.zeros((3, 3)), 0.9, 1)
    assert tau == 0 and nnz_in == nnz_out == 0 and np.all(z == 0)
    with pytest.raises(ValueError):
        dbtd_prune(g, 1.0, 1)


def test_the_ledger_reads_the_pruning_kernels_count_for_that_array_only():
    """note_nonzeros: the ledger takes the writer's count for the very array it was given, counts anything else
    (a copy, a view, a later array), and a gradprune run's totals are the same with the note as without it."""
    import minicnn.cost.counts as C
    from minicnn.cost.counts import Tensor, note_nonzeros
    from minicnn.cost.formats import TensorFormat
    sparse = TensorFormat(sparse=True)
    g = np.array([[0.0, 1.0], [2.0, 0.0]], dtype=np.float32)
    note_nonzeros(g, 7)                                   # a deliberately wrong count: shows which path was taken
    assert Tensor.of(g, sparse).nnz == 7
    assert Tensor.of(g.copy(), sparse).nnz == 2 and Tensor.of(g.reshape(-1), sparse).nnz == 2
    assert Tensor.of(g).nnz is None                       # dense formats never count
    h = g + 0
    note_nonzeros(h, 2)
    assert Tensor.of(g, sparse).nnz == 2                  # one slot: g's note is gone

    from _method_helpers import small_trainer
    totals = []
    real = C._noted_nonzeros
    try:
        for noted in (real, lambda a: None):
            C._noted_nonzeros = noted
            s = small_trainer(["gradprune"], arch="resnet8", epochs=1, n_train=64, n_test=16, batch=32).fit()
            totals.append((s["macs"], s["bytes"], s["energy_j"]))
    finally:
        C._noted_nonzeros = real
    assert totals[0] == totals[1]
