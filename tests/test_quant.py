"""Fixed-point emulation (minicnn.quant): the grid, edge cases, the MSB predictor, kernel == reference."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.quant import activation_range, fixed_point, gradient_range, grid, msb_codes, quantize, weight_range
from minicnn.quant.reference import fixed_point_naive, msb_truncate_naive

FEW = settings(max_examples=30, deadline=None)


def test_grid_definition_on_hand_numbers():
    # signed, r = 1, 3 bits: lo = -1, step = 2/8 = 0.25, grid -1, -0.75, ..., 0.75
    q = fixed_point(np.array([-1.0, -0.3, 0.0, 0.1, 0.124, 0.126, 0.99, 1.0, 5.0]), 3, 1.0, True, want_code=True)
    np.testing.assert_array_equal(q.code, [0, 3, 4, 4, 4, 5, 7, 7, 7])
    np.testing.assert_array_equal(q.value, [-1.0, -0.25, 0.0, 0.0, 0.0, 0.25, 0.75, 0.75, 0.75])
    # unsigned, r = 2, 2 bits: step 0.5, grid 0, 0.5, 1, 1.5; ties to even codes (0.25 -> 0, 0.75 -> 2)
    q = fixed_point(np.array([0.0, 0.25, 0.75, 1.25, 2.0, -1.0]), 2, 2.0, False, want_code=True)
    np.testing.assert_array_equal(q.code, [0, 0, 2, 2, 3, 0])
    np.testing.assert_array_equal(q.value, [0.0, 0.0, 1.0, 1.0, 1.5, 0.0])


@pytest.mark.parametrize("bits", [4, 8, 16])
@pytest.mark.parametrize("signed", [True, False])
def test_round_trip_error_is_at_most_half_a_step_and_values_are_on_the_grid(rng, bits, signed):
    x = rng.standard_normal((5, 7)).astype(np.float64)
    if not signed:
        x = np.abs(x)
    r = gradient_range(x)
    q = fixed_point(x, bits, r, signed, want_code=True)
    lo, step = grid(r, bits, signed)
    inside = x < r - step / 2              # the values that do not saturate at the top code
    assert np.all(np.abs(q.value - x)[inside] <= step[0] / 2 + 1e-15)
    np.testing.assert_array_equal(q.value, q.code * step[0] + lo[0])
    assert q.code.min() >= 0 and q.code.max() <= 2 ** bits - 1
    # quantizing a quantized tensor again (same grid) changes nothing
    np.testing.assert_array_equal(fixed_point(q.value, bits, r, signed).value, q.value)


def test_all_zero_tensor():
    for signed in (True, False):
        q = fixed_point(np.zeros((3, 4), np.float32), 8, gradient_range(np.zeros(2)), signed, msb_bits=4,
                        want_code=True)
        assert np.all(q.code == 0) and np.all(q.value == 0) and np.all(q.msb == 0)
        assert q.value.dtype == np.float32


def test_constant_tensor_saturates_at_the_top_code():
    x = np.full((2, 3), 3.0)
    q = fixed_point(x, 8, gradient_range(x), False, want_code=True)   # unsigned: lo 0, r = 3 -> code 256 clipped
    assert np.all(q.code == 255) and np.allclose(q.value, 3.0 * 255 / 256)
    q = fixed_point(-x, 8, gradient_range(x), True, want_code=True)   # -3 is lo itself: code 0, exact
    assert np.all(q.code == 0) and np.all(q.value == -3.0)


def test_negative_only_tensor_signed_and_unsigned():
    x = -np.linspace(0.1, 2.0, 20)
    r = gradient_range(x)
    q = fixed_point(x, 8, r, True)
    assert np.all(q.value < 0) and np.max(np.abs(q.value - x)) <= 2 * 2.0 / 256 / 2 + 1e-12
    assert np.all(fixed_point(x, 8, r, False).value == 0)       # a non-negative grid clips them all to 0


def test_saturation_at_the_top_code():
    x = np.array([0.5, 0.999, 1.0, 1.5, 100.0])
    q = fixed_point(x, 4, 1.0, False, want_code=True)
    np.testing.assert_array_equal(q.code, [8, 15, 15, 15, 15])
    assert q.value.max() == 15 / 16


def test_per_filter_weight_ranges():
    w = np.stack([np.full((2, 3, 3), 0.1), np.full((2, 3, 3), -4.0)])   # two filters of very different scale
    w[0, 0, 0, 0] = -0.1
    r = weight_range(w)
    np.testing.assert_array_equal(r, [0.1, 4.0])
    q = fixed_point(w, 8, r, True)
    assert q.value[0, 1, 0, 0] == pytest.approx(0.1 - 0.2 / 256)   # top code of filter 0's own grid
    assert np.all(q.value[1] == -4.0)
    with pytest.raises(ValueError, match="ranges"):
        fixed_point(w, 8, np.ones(3), True)


def test_activation_range_is_the_mean_of_per_sample_maxima():
    x = np.zeros((3, 2, 2, 2))
    x[0, 0, 0, 0], x[1, 1, 1, 1], x[2, 0, 1, 0] = 1.0, -2.0, 6.0
    np.testing.assert_array_equal(activation_range(x), [3.0])


def test_non_finite_range_is_an_error():
    with pytest.raises(ValueError, match="NaN"):
        fixed_point(np.array([1.0, np.nan]), 8, gradient_range(np.array([1.0, np.nan])), True)


def test_msb_grid_rounds_to_multiples_and_clips_to_the_top_code():
    codes = np.arange(256)
    m = msb_codes(codes, 8, 4)                          # unit 16
    assert set(np.unique(m)) <= set(range(0, 256, 16)) | {255}
    assert np.all(np.abs(m - codes) <= 8)
    np.testing.assert_array_equal(m[[0, 7, 8, 9, 24, 40, 247, 248, 255]], [0, 0, 0, 16, 32, 32, 240, 255, 255])
    # 8 -> 0 and 24 -> 32: ties go to the even multiple (round half to even); 248 -> 256 clipped to 255
    trunc = msb_truncate_naive(codes, 8, 4)             # the paper's wording: always <= the code
    assert np.all(trunc <= codes) and np.any(m > codes)
    # through the kernel: msb values are the msb codes on the b-bit grid
    x = np.linspace(-1, 1, 301)
    q = fixed_point(x, 8, 1.0, True, msb_bits=4, want_code=True)
    np.testing.assert_array_equal(q.msb, msb_codes(q.code, 8, 4) * q.step[0] + q.lo[0])
    assert np.max(np.abs(q.msb - q.value)) <= 8 * q.step[0]
    # m == b: the predictor is the value itself
    q = fixed_point(x, 8, 1.0, True, msb_bits=8)
    np.testing.assert_array_equal(q.msb, q.value)


def test_stochastic_rounding_is_unbiased_and_seeded(rng):
    x = np.full(200_000, 0.3)                           # 0.3 on a grid of step 1/8 (4 bits, r = 1): code 10.4
    q = fixed_point(x, 4, 1.0, True, rng=np.random.default_rng(1), want_code=True)
    assert set(np.unique(q.code)) == {10, 11}
    p11 = (q.code == 11).mean()                         # P(round up) = 0.4; 5 sigma = 0.0055
    assert abs(p11 - 0.4) < 0.0055
    again = fixed_point(x, 4, 1.0, True, rng=np.random.default_rng(1)).value
    np.testing.assert_array_equal(again, q.value)


@st.composite
def quant_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    bits = draw(st.integers(1, 16))
    msb = draw(st.integers(1, bits))
    return dict(shape=shape, bits=bits, msb=msb, signed=draw(st.booleans()), per_row=draw(st.booleans()),
                stochastic=draw(st.booleans()), seed=draw(st.integers(0, 2**31)),
                dtype=draw(st.sampled_from([np.float32, np.float64])), scale=draw(st.sampled_from([1e-6, 1.0, 1e3])),
                ties=draw(st.booleans()))


@FEW
@given(quant_case())
def test_kernel_equals_reference_bit_for_bit(case):
    rng = np.random.default_rng(case["seed"])
    x = (rng.standard_normal(case["shape"]) * case["scale"]).astype(case["dtype"])
    if case["ties"]:                 # values exactly on half-steps: the rounding rule is exercised
        x = (np.round(rng.standard_normal(case["shape"]) * 8) / 2).astype(case["dtype"])
    if x.size > 3:
        x.reshape(-1)[1] = 0.0
    r = weight_range(x) if case["per_row"] else gradient_range(x)
    if not case["signed"]:
        x = np.abs(x)
    u_rng = np.random.default_rng(case["seed"] + 1) if case["stochastic"] else None
    got = fixed_point(x, case["bits"], r, case["signed"], msb_bits=case["msb"], rng=u_rng, want_code=True)
    u = np.random.default_rng(case["seed"] + 1).random(x.size) if case["stochastic"] else None
    lo, step = grid(r, case["bits"], case["signed"])
    value, msb, code = fixed_point_naive(x, case["bits"], lo, step, case["msb"], u)
    np.testing.assert_array_equal(got.code, code)
    np.testing.assert_array_equal(got.value, value)
    np.testing.assert_array_equal(got.msb, msb)
    assert got.value.dtype == x.dtype and got.value.shape == x.shape
    np.testing.assert_array_equal(quantize(x, case["bits"], r, case["signed"]),
                                  fixed_point_naive(x, case["bits"], lo, step)[0])


# -- the fused range pass (numba) against its NumPy definitions --------------------------------------------
@st.composite
def range_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    return dict(shape=shape, seed=draw(st.integers(0, 2**31)), dtype=draw(st.sampled_from([np.float32, np.float64])),
                scale=draw(st.sampled_from([1e-30, 1e-6, 1.0, 1e6])), nonneg=draw(st.booleans()),
                zeros=draw(st.booleans()))


@FEW
@given(range_case())
def test_fused_ranges_equal_the_numpy_definitions(case):
    from minicnn.quant import activation_range_and_sign
    from minicnn.quant.reference import activation_range_naive, gradient_range_naive, weight_range_naive
    rng = np.random.default_rng(case["seed"])
    x = (rng.standard_normal(case["shape"]) * case["scale"]).astype(case["dtype"])
    if case["nonneg"]:
        x = np.abs(x)
    if case["zeros"]:
        x[rng.random(x.shape) < 0.5] = 0.0
        x.reshape(-1)[0] = -0.0          # a negative zero is not a negative entry
    r, signed = activation_range_and_sign(x)
    r_ref, signed_ref = activation_range_naive(x)
    assert r.dtype == np.float64 and r.shape == (1,)
    np.testing.assert_array_equal(r, r_ref)
    assert signed == signed_ref
    np.testing.assert_array_equal(activation_range(x), r_ref)
    np.testing.assert_array_equal(weight_range(x), weight_range_naive(x))
    np.testing.assert_array_equal(gradient_range(x), gradient_range_naive(x))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fused_range_of_a_non_finite_tensor_is_refused_by_the_grid(bad):
    x = np.ones((3, 4), dtype=np.float32)
    x[1, 2] = bad
    for r in (activation_range(x), weight_range(x), gradient_range(x)):
        assert not np.all(np.isfinite(r))
        with pytest.raises(ValueError, match="finite"):
            fixed_point(x, 8, r, True)


def test_range_of_an_empty_tensor_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        gradient_range(np.zeros((0, 3), dtype=np.float32))


@pytest.mark.parametrize("rows", [1, 3])
def test_kernel_equals_reference_across_task_boundaries(rows):
    """Rows longer than one parallel task (the kernel cuts each row into _CHUNK-sized tasks)."""
    from minicnn.quant.fixed import _CHUNK
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 2 * _CHUNK + 7)).astype(np.float32)
    r = weight_range(x) if rows > 1 else gradient_range(x)
    for msb in (None, 4):
        got = fixed_point(x, 8, r, True, msb_bits=msb)
        lo, step = grid(r, 8, True)
        value, m, _ = fixed_point_naive(x, 8, lo, step, msb)
        np.testing.assert_array_equal(got.value, value)
        if msb:
            np.testing.assert_array_equal(got.msb, m)


def test_all_zero_signed_tensor_gives_positive_zeros_as_the_reference():
    x = np.zeros((2, 5), dtype=np.float32)
    q = fixed_point(x, 8, gradient_range(x), True, msb_bits=4)
    assert not np.signbit(q.value).any() and not np.signbit(q.msb).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_ranges_on_the_parallel_path_equal_the_numpy_definitions(dtype):
    """Above SERIAL_BELOW entries the range pass runs on numba's threads: the same results, bit for bit
    (a row holding only zeros and -0.0, a row with one subnormal, the rest random)."""
    from minicnn.quant import activation_range_and_sign
    from minicnn.quant.fixed import SERIAL_BELOW
    from minicnn.quant.reference import activation_range_naive, gradient_range_naive, weight_range_naive
    rng = np.random.default_rng(5)
    x = np.abs(rng.standard_normal((8, 4, 64, 64))).astype(dtype)
    assert x.size >= SERIAL_BELOW
    x[1] = 0.0
    x[1, 0, 0, 0] = -0.0
    x[2] = 0.0
    x[2, 3, 7, 9] = np.finfo(dtype).smallest_subnormal
    r, signed = activation_range_and_sign(x)
    assert (r, signed) == activation_range_naive(x) and not signed
    x[5, 1, 2, 3] = -7.5
    assert activation_range_and_sign(x)[1] is True
    np.testing.assert_array_equal(weight_range(x), weight_range_naive(x))
    np.testing.assert_array_equal(gradient_range(x), gradient_range_naive(x))


def test_range_pass_edge_cases_a_negative_nan_and_integers():
    """A NaN with its sign bit set (what x86 arithmetic makes) is not a negative entry, as for NumPy; an int8
    -128 has |x| = 128 (cast before abs)."""
    from minicnn.quant import activation_range_and_sign
    from minicnn.quant.fixed import row_absmax_negative
    from minicnn.quant.reference import activation_range_naive
    x = np.ones((2, 3, 4, 4), np.float32)
    x.reshape(-1)[50] = np.array([0xFFC00000], np.uint32).view(np.float32)[0]      # -nan
    r, signed = activation_range_and_sign(x)
    assert np.isnan(r[0]) and signed is False and activation_range_naive(x)[1] is False
    absmax, negative = row_absmax_negative(np.array([[-128, 5]], np.int8))
    assert absmax.tolist() == [128.0] and negative.tolist() == [True]


def test_a_float64_step_with_no_reciprocal_divides():
    """max|x| ~ 1e-310: step = r / 256 has no float64 reciprocal (1/step overflows); that row divides, kernel and
    reference alike, and the grid is the division's."""
    import warnings
    from minicnn.quant.fixed import grid
    from minicnn.quant.reference import fixed_point_naive
    x = np.array([0.0, 1e-310, 5e-311])
    r = gradient_range(x)
    lo, step = grid(r, 8, False)
    with np.errstate(over="ignore"):
        assert np.isinf(1.0 / step[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = fixed_point(x, 8, r, False, msb_bits=4, want_code=True)
        v, m, c = fixed_point_naive(x, 8, lo, step, msb_bits=4)
    assert np.array_equal(q.value, v) and np.array_equal(q.msb, m) and np.array_equal(q.code, c)
    assert q.code.tolist() == [0, 255, round(5e-311 / step[0])]
    assert q.value[0] == 0.0 and np.all(np.isfinite(q.value))
