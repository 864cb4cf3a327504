"""Tests of sparsemax, entmax15, entmax_bisect and their backward passes against float64 references."""

from __future__ import annotations

import logitkit as lk
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

ml_dtypes = pytest.importorskip("ml_dtypes")

# ---------------------------------------------------------------- float64 references (sort based)


def ref_sparsemax(z):
    """Martins & Astudillo's closed form on the sorted row, float64."""
    z = np.asarray(z, np.float64)
    zs = -np.sort(-z, axis=-1)
    k = np.arange(1, z.shape[-1] + 1)
    cs = np.cumsum(zs, -1) - 1
    support = (zs - cs / k > 0).sum(-1, keepdims=True)
    tau = np.take_along_axis(cs, support - 1, -1) / support
    return np.maximum(z - tau, 0)


def ref_entmax15(z):
    """Peters et al.'s closed form on the sorted row (entmax package convention z/2), float64."""
    z = np.asarray(z, np.float64) / 2
    z = z - z.max(-1, keepdims=True)
    zs = -np.sort(-z, axis=-1)
    k = np.arange(1, z.shape[-1] + 1)
    mean = np.cumsum(zs, -1) / k
    var = np.cumsum(zs**2, -1) / k - mean**2
    tau = mean - np.sqrt(np.clip((1 - k * var) / k, 0, None))
    support = (tau <= zs).sum(-1, keepdims=True)
    return np.clip(z - np.take_along_axis(tau, support - 1, -1), 0, None) ** 2


def ref_entmax_alpha(z, alpha):
    """alpha-entmax with tau solved to machine precision by 200 bisection steps on the full row."""
    z = np.asarray(z, np.float64) * (alpha - 1)
    z = z - z.max(-1, keepdims=True)
    lo = np.full(z.shape[:-1] + (1,), -1.0)
    hi = np.zeros_like(lo)
    for _ in range(200):
        mid = (lo + hi) / 2
        s = (np.clip(z - mid, 0, None) ** (1 / (alpha - 1))).sum(-1, keepdims=True)
        lo = np.where(s >= 1, mid, lo)
        hi = np.where(s >= 1, hi, mid)
    p = np.clip(z - lo, 0, None) ** (1 / (alpha - 1))
    return p / p.sum(-1, keepdims=True)


def torch_sparsemax(x):
    """Differentiable float64 sparsemax (sort + closed form) for autograd references."""
    zs, _ = torch.sort(x, dim=-1, descending=True)
    k = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    cs = zs.cumsum(-1) - 1
    support = (zs - cs / k > 0).sum(-1, keepdim=True)
    tau = cs.gather(-1, support - 1) / support
    return torch.clamp(x - tau, min=0)


def torch_entmax15(x):
    x = x / 2
    x = x - x.max(-1, keepdim=True).values
    zs, _ = torch.sort(x, dim=-1, descending=True)
    k = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    mean = zs.cumsum(-1) / k
    var = (zs**2).cumsum(-1) / k - mean**2
    tau = mean - torch.sqrt(torch.clamp((1 - k * var) / k, min=0))
    support = (tau <= zs).sum(-1, keepdim=True)
    return torch.clamp(x - tau.gather(-1, support - 1), min=0) ** 2


def tol(dtype, scale=1.0):
    """Absolute tolerance: rounding x/T in the compute dtype moves outputs by ~ulp(max |x/T|)."""
    eps = np.finfo(np.float32 if dtype != np.float64 else np.float64).eps
    return 8 * eps * max(1.0, scale)


FORWARD = {
    "sparsemax": (lk.sparsemax, ref_sparsemax),
    "entmax15": (lk.entmax15, ref_entmax15),
}
SIZES = [1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 33, 64, 100, 513, 1000, 4099]

# ---------------------------------------------------------------- forward values


@pytest.mark.parametrize("op", sorted(FORWARD))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [0.05, 1.0, 5.0])
def test_forward_matches_reference(isa, op, dtype, scale):
    f, ref = FORWARD[op]
    rng = np.random.default_rng(7)
    for n in SIZES:
        x = (rng.standard_normal((5, n)) * scale).astype(dtype)
        y = f(x)
        assert y.dtype == dtype
        r = ref(x.astype(np.float64))
        np.testing.assert_allclose(y, r, rtol=0, atol=tol(dtype, 4 * scale), err_msg=f"n={n}")
        np.testing.assert_allclose(y.sum(-1), 1, rtol=0, atol=tol(dtype, n * 1e-3))
        assert (y >= 0).all()
        if dtype == np.float64:  # off the support the output is exactly zero, on it positive
            np.testing.assert_array_equal(y > 0, r > 1e-12)


@pytest.mark.parametrize("alpha", [1.1, 1.3, 1.5, 2.0, 2.5, 4.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entmax_bisect_matches_reference(isa, alpha, dtype):
    rng = np.random.default_rng(3)
    for n in [1, 3, 16, 17, 100, 1000]:
        x = (rng.standard_normal((4, n)) * 2).astype(dtype)
        y = lk.entmax_bisect(x, alpha)
        r = ref_entmax_alpha(x.astype(np.float64), alpha)
        # For alpha > 2 the map d -> d^(1/(alpha-1)) has unbounded slope at 0: an error of one
        # float32 ulp in tau moves the smallest outputs by about ulp^(1/(alpha-1)).
        atol = max(1e-12, 1e-15 ** (1 / (alpha - 1))) if dtype == np.float64 else max(2e-6, 1e-6 ** (1 / (alpha - 1)))
        np.testing.assert_allclose(y, r, rtol=0, atol=atol, err_msg=f"n={n}")
        np.testing.assert_allclose(y.sum(-1), 1, rtol=0, atol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("alpha", [1.2, 1.5, 2.0])
def test_entmax_bisect_few_iterations_follow_the_package(isa, alpha):
    # With n_iter steps from [-1, -(1/n)^(alpha-1)], tau is the entmax package's tau_m.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 50))
    for n_iter in (1, 2, 5):
        z = x * (alpha - 1)
        z = z - z.max(-1, keepdims=True)
        lo = np.full((3, 1), -1.0)
        dm = -((1 / 50) ** (alpha - 1)) - lo
        for _ in range(n_iter):
            dm = dm / 2
            mid = lo + dm
            p = np.clip(z - mid, 0, None) ** (1 / (alpha - 1))
            lo = np.where(p.sum(-1, keepdims=True) - 1 >= 0, mid, lo)
        expected = p / p.sum(-1, keepdims=True)
        np.testing.assert_allclose(lk.entmax_bisect(x, alpha, n_iter=n_iter), expected, rtol=0, atol=1e-13)



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entmax_bisect_equal_values_any_iteration_count(isa, dtype):
    """A row of equal values has its threshold at the top of the bisection bracket, where
    1 - (alpha - 1) theta rounds to 0: once the midpoints reach it (alpha = 10.75, n_iter = 24 in
    float32, a fuzzer finding) the last point has no mass, and the output must still be the
    uniform distribution 1/n, not zeros (or the package's 0/0)."""
    for n in (2, 3, 15, 100):
        x = np.full((2, n), 0.25, dtype)
        for alpha in (1.5, 2.0, 4.0, 10.75, 30.0):
            for n_iter in range(1, 60):
                for temperature in (1.0, 65.0):
                    y = lk.entmax_bisect(x, alpha, n_iter=n_iter, temperature=temperature)
                    np.testing.assert_allclose(y, 1 / n, rtol=16 * np.finfo(dtype).eps,
                                               err_msg=f"n={n} alpha={alpha} n_iter={n_iter} T={temperature}")

def test_entmax_bisect_alpha_one_is_softmax(isa):
    x = np.random.default_rng(0).standard_normal((3, 40))
    e = np.exp(x / 0.7 - (x / 0.7).max(-1, keepdims=True))
    np.testing.assert_allclose(lk.entmax_bisect(x, 1.0, temperature=0.7), e / e.sum(-1, keepdims=True), rtol=1e-13)


# ---------------------------------------------------------------- alpha -> 1: the softmax limit

# alpha - 1 from 0.1 down to where it rounds to 0 (1 + 1e-17, then softmax exactly), and the
# smallest alpha above 1 of each compute type (as a float64 value; float32 rounds the others).
NEAR_ONE = [1 + 1e-1, 1 + 1e-3, 1 + 1e-6, 1 + 1e-9, 1 + 1e-12, 1 + 1e-15, 1 + 1e-17,
            float(np.nextafter(1.0, 2.0)), float(np.nextafter(np.float32(1), np.float32(2)))]
_MP_ENTMAX = {}


def mp_entmax_rows(x, alpha, temperature):
    """alpha-entmax of the exact values of x at the exact binary alpha, with mpmath: Newton from
    tau = -1 on f(tau) = sum [(alpha-1) x/T - max - tau]_+^(1/(alpha-1)) - 1 (convex, decreasing,
    so every iterate stays below the root) until the step is 1e-40 of alpha - 1; 60 digits keep
    d^(1/(alpha-1)) exact to 1e-40 even for 1/(alpha-1) = 2^52. alpha = 1 is softmax."""
    import mpmath

    key = (x.tobytes(), x.shape, alpha, temperature)
    if key in _MP_ENTMAX:
        return _MP_ENTMAX[key]
    out = np.empty(x.shape)
    with mpmath.workdps(60):
        e = mpmath.mpf(alpha) - 1
        for r, row in enumerate(x):
            z = [mpmath.mpf(float(v)) / mpmath.mpf(temperature) for v in row]
            m = max(z)
            if e == 0:
                p = [mpmath.exp(v - m) for v in z]
            else:
                z = [e * (v - m) for v in z]
                k, tau = 1 / e, mpmath.mpf(-1)
                for _ in range(200):
                    d = [v - tau for v in z if v > tau]
                    step = (mpmath.fsum(di**k for di in d) - 1) / (k * mpmath.fsum(di ** (k - 1) for di in d))
                    tau += step
                    if abs(step) <= e * mpmath.mpf(10) ** -40:
                        break
                else:
                    raise AssertionError("reference did not converge")
                p = [(v - tau) ** k if v > tau else mpmath.mpf(0) for v in z]
            s = mpmath.fsum(p)
            out[r] = [float(v / s) for v in p]
    _MP_ENTMAX[key] = out
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_entmax_bisect_near_alpha_one_matches_mpmath(isa, dtype, temperature):
    # Logits in [-1, 1] (so c x in [-2, 2]): every output lies well inside the support for every
    # alpha here, and the reference is exact. Each output's relative error is bounded as
    # softmax's, by a few units of eps times (1 + max |c x|), whatever alpha - 1 is (before the
    # fix, [(alpha-1) x - tau]^(1/(alpha-1)) lost eps/(alpha-1) of relative precision: 4e-5 at
    # alpha = 1 + 1e-12 in float64, 100% at the smallest float32 alpha). Measured after: at most
    # 15.6 eps (float64, alpha = 1.1, T = 0.5; 7.4 below alpha = 1.001), 10.2 eps in float32.
    rng = np.random.default_rng(21)
    x = rng.uniform(-1, 1, (3, 33)).astype(dtype)
    eps = np.finfo(dtype).eps
    softmax_ref = mp_entmax_rows(x, 1.0, temperature)
    for alpha in NEAR_ONE:
        a = float(dtype(alpha))  # the op rounds alpha to the compute type
        y = lk.entmax_bisect(x, alpha, temperature=temperature)
        r = mp_entmax_rows(x, a, temperature)
        rel = np.abs(y - r) / r
        assert rel.max() <= 8 * eps * (1 + 2 / temperature), f"alpha=1+{a - 1:.3g}: {rel.max() / eps:.1f} eps"
        # Continuity at 1: the distance to softmax is first order in alpha - 1 (the exponent
        # log1p(e w)/e = w - e w^2/2 + ..., |w| <= max|c x| + log n) plus the rounding above.
        gap = np.abs(y - softmax_ref) / softmax_ref
        w = 2 * 2 / temperature + np.log(x.shape[-1])
        assert gap.max() <= (a - 1) * w * w + 8 * eps * (1 + 2 / temperature), f"alpha=1+{a - 1:.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entmax_bisect_backward_near_alpha_one(isa, dtype):
    # g = y^(2 - alpha) -> y: the VJP at each alpha against mpmath from the same y and dy, and
    # its distance to the softmax VJP (alpha = 1) shrinks with alpha - 1.
    import mpmath

    rng = np.random.default_rng(22)
    x = rng.uniform(-1, 1, (3, 33))
    y = lk.entmax_bisect(x, 1.0, temperature=0.5).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    eps = np.finfo(dtype).eps
    dx1 = lk.entmax_bisect_backward(y, dy, 1.0, temperature=0.5)
    for alpha in NEAR_ONE:
        a = float(dtype(alpha))
        dx = lk.entmax_bisect_backward(y, dy, alpha, temperature=0.5)
        ref = np.empty(x.shape)
        with mpmath.workdps(40):
            for i in range(x.shape[0]):
                g = [mpmath.mpf(float(v)) ** (2 - mpmath.mpf(a)) for v in y[i]]
                d = [mpmath.mpf(float(v)) for v in dy[i]]
                q = mpmath.fsum(gi * di for gi, di in zip(g, d)) / mpmath.fsum(g)
                ref[i] = [float(2 * gi * (di - q)) for gi, di in zip(g, d)]
        scale = np.abs(ref).max()
        assert np.abs(dx - ref).max() <= 16 * eps * scale, f"alpha=1+{a - 1:.3g}"
        assert np.abs(dx - dx1).max() <= (a - 1) * 16 * scale + 16 * eps * scale, f"alpha=1+{a - 1:.3g}"


def test_long_rows(isa):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 70001)) * 3
    for op in FORWARD:
        f, ref = FORWARD[op]
        np.testing.assert_allclose(f(x), ref(x), rtol=0, atol=1e-13)
        np.testing.assert_allclose(f(x.astype(np.float32)), ref(x.astype(np.float32)), rtol=0, atol=4e-6)


def test_dense_rows_keep_precision(isa):
    # Every entry in the support (spread below 1/n): thresholds from far pivots would cancel.
    rng = np.random.default_rng(2)
    x = rng.random((3, 20000)) * 1e-6
    for op in FORWARD:
        f, ref = FORWARD[op]
        r = ref(x.astype(np.float32).astype(np.float64))
        y = f(x.astype(np.float32))
        assert (y > 0).all()
        np.testing.assert_allclose(y, r, rtol=1e-4, atol=0)
        np.testing.assert_allclose(f(x), ref(x), rtol=1e-9, atol=0)


# ---------------------------------------------------------------- ties and special values


@pytest.mark.parametrize("op", sorted(FORWARD))
def test_ties(isa, op):
    f = FORWARD[op][0]
    for dtype in (np.float32, np.float64):
        eps = np.finfo(dtype).eps
        np.testing.assert_allclose(f(np.array([2.0, 2.0, 2.0, -5.0], dtype)), np.array([1, 1, 1, 0]) / 3, rtol=2 * eps)
        for n in (1, 5, 16, 37):
            np.testing.assert_allclose(f(np.full(n, 0.3, dtype)), np.full(n, 1 / n), rtol=4 * np.finfo(dtype).eps)


def test_two_entries_closed_forms(isa):
    # sparsemax([a, 0]) = [(1 + a)/2, (1 - a)/2] for |a| < 1; entmax15 halves the scale.
    for a in (0.0, 0.25, 0.9, 1.0, 3.0):
        y = lk.sparsemax(np.array([a, 0.0]))
        expected = [1.0, 0.0] if a >= 1 else [(1 + a) / 2, (1 - a) / 2]
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-15)
        np.testing.assert_allclose(lk.entmax15(np.array([a, 0.0])), ref_entmax15([a, 0.0]), rtol=0, atol=1e-15)


@pytest.mark.parametrize("op", ["sparsemax", "entmax15", "bisect"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(isa, op, dtype):
    f = {"sparsemax": lk.sparsemax, "entmax15": lk.entmax15, "bisect": lambda x, **k: lk.entmax_bisect(x, 1.3, **k)}[op]
    inf, nan = np.inf, np.nan
    x = np.array(
        [
            [0.0, nan, 1.0, 2.0],  # NaN anywhere: NaN row
            [-inf, -inf, -inf, -inf],  # nothing finite: NaN row
            [inf, 0.0, inf, -inf],  # +inf entries share the mass
            [-inf, 0.0, 5.0, -inf],  # -inf entries get 0
            [1e30, 1e30, -1e30, 0.0],  # huge but finite: the ties share
            [-1e30, -1e30 + 1e24, -inf, -1e30],
        ],
        dtype,
    )
    y = f(x)
    assert np.isnan(y[0]).all() and np.isnan(y[1]).all()
    np.testing.assert_array_equal(y[2], [0.5, 0, 0.5, 0])
    np.testing.assert_array_equal(y[3], [0, 0, 1, 0])
    # entmax15 squares a rounded 1/sqrt(2): half an ulp off 0.5 at most
    np.testing.assert_allclose(y[4], [0.5, 0.5, 0, 0], rtol=2 * np.finfo(dtype).eps, atol=0)
    np.testing.assert_array_equal(y[5], [0, 1, 0, 0])
    # x / temperature overflowing counts as +inf
    big = np.array([np.finfo(dtype).max, np.finfo(dtype).max / 4, 0.0], dtype)
    np.testing.assert_array_equal(f(big, temperature=0.5), [1, 0, 0])


def test_nan_rows_do_not_leak(isa):
    x = np.random.default_rng(0).standard_normal((4, 33))
    x[1, 7] = np.nan
    for f in (lk.sparsemax, lk.entmax15, lambda a: lk.entmax_bisect(a, 1.7)):
        y = f(x)
        assert np.isnan(y[1]).all()
        assert np.isfinite(y[[0, 2, 3]]).all()


# ---------------------------------------------------------------- temperature, layout, dtypes


@pytest.mark.parametrize("op", sorted(FORWARD))
def test_temperature_divides_x(isa, op):
    f, ref = FORWARD[op]
    x = np.random.default_rng(1).standard_normal((4, 60))
    for t in (0.01, 0.3, 1.0, 7.0, 1e3):
        np.testing.assert_allclose(f(x, temperature=t), ref(x / t), rtol=0, atol=1e-12 * max(1, 1 / t))
    np.testing.assert_allclose(
        lk.entmax_bisect(x, 1.4, temperature=0.3), ref_entmax_alpha(x / 0.3, 1.4), rtol=0, atol=1e-12
    )


ALL_OPS = {
    "sparsemax": lk.sparsemax,
    "entmax15": lk.entmax15,
    "bisect": lambda x, axis=-1, **k: lk.entmax_bisect(x, 1.25, axis, **k),
}


@pytest.mark.parametrize("op", sorted(ALL_OPS))
def test_layouts(isa, op):
    f = ALL_OPS[op]
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 5, 40))
    base = f(np.ascontiguousarray(np.moveaxis(x, 1, -1)))
    np.testing.assert_array_equal(f(x, axis=1), np.moveaxis(base, -1, 1))  # strided rows (gather)
    np.testing.assert_array_equal(f(x[:, :, ::-2]), f(np.ascontiguousarray(x[:, :, ::-2])))  # negative stride
    np.testing.assert_array_equal(f(x.T, axis=0), f(x).T)
    flat = f(x.reshape(6, -1)).reshape(x.shape)
    np.testing.assert_allclose(f(x, axis=(1, 2)), flat, rtol=0, atol=1e-15)
    np.testing.assert_allclose(f(x, axis=None), f(x.reshape(-1)).reshape(x.shape), rtol=0, atol=1e-15)
    # out=, in place, and an out of another dtype
    expected = f(x)
    out = np.empty_like(x)
    assert f(x, out=out) is out
    np.testing.assert_array_equal(out, expected)
    inplace = x.copy()
    f(inplace, out=inplace)
    np.testing.assert_array_equal(inplace, expected)
    out32 = np.empty(x.shape, np.float32)  # out's dtype sets the compute dtype
    f(x, out=out32)
    np.testing.assert_allclose(out32, expected, rtol=0, atol=1e-6)
    # empty and size-1 axes, scalars
    assert f(np.empty((3, 0))).shape == (3, 0)
    np.testing.assert_array_equal(f(np.array([[2.0], [-1.0]])), [[1.0], [1.0]])
    assert f(np.float64(3.0)) == 1.0


@pytest.mark.parametrize("op", sorted(ALL_OPS))
def test_dtypes(isa, op):
    f = ALL_OPS[op]
    x = np.random.default_rng(9).standard_normal((3, 21))
    expected = f(x.astype(np.float32))
    for dt in (np.float16, ml_dtypes.bfloat16):
        xr = x.astype(dt)
        y = f(xr)
        assert y.dtype == dt
        np.testing.assert_allclose(y.astype(np.float64), f(xr.astype(np.float32)).astype(dt).astype(np.float64))
    assert f(x.astype(np.float16), dtype=np.float32).dtype == np.float32
    assert f(np.array([[1, 2, 3]])).dtype == np.float64
    np.testing.assert_allclose(f(x.astype(np.float32)), expected)
    with pytest.raises(TypeError, match="x"):
        f(x.astype(np.complex64))
    with pytest.raises(TypeError, match="dtype"):
        f(x, dtype=np.int32)


def test_bad_arguments():
    x = np.zeros((2, 3))
    for f in (lk.sparsemax, lk.entmax15, lk.entmax_bisect):
        for t in (0.0, -1.0, np.inf, np.nan):
            with pytest.raises(ValueError, match="temperature"):
                f(x, temperature=t)
        with pytest.raises(TypeError, match="temperature"):
            f(x, temperature="hot")
        with pytest.raises(np.exceptions.AxisError):
            f(x, axis=2)
        with pytest.raises(ValueError, match="out"):
            f(x, out=np.empty((3, 2)))
        with pytest.raises(TypeError, match="out"):
            f(x, out=[0.0])
    for alpha in (0.0, -1.0, 0.5, np.inf, np.nan):
        with pytest.raises(ValueError, match="alpha"):
            lk.entmax_bisect(x, alpha)
        with pytest.raises(ValueError, match="alpha"):
            lk.entmax_bisect_backward(x, x, alpha)
    with pytest.raises(TypeError, match="alpha"):
        lk.entmax_bisect(x, "1.5")
    for n_iter in (0, -3):
        with pytest.raises(ValueError, match="n_iter"):
            lk.entmax_bisect(x, n_iter=n_iter)
    with pytest.raises(TypeError, match="n_iter"):
        lk.entmax_bisect(x, n_iter=2.5)
    for g in (lk.sparsemax_backward, lk.entmax15_backward, lk.entmax_bisect_backward):
        with pytest.raises(ValueError, match="dy"):
            g(x, np.zeros((2, 4)))
        with pytest.raises(TypeError, match="y"):
            g(x.astype(complex), x)
        with pytest.raises(ValueError, match="temperature"):
            g(x, x, temperature=0)


def test_thread_count_does_not_change_bits(isa):
    x = np.random.default_rng(6).standard_normal((300, 517)).astype(np.float32)
    dy = np.random.default_rng(7).standard_normal(x.shape).astype(np.float32)
    previous = lk.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            lk.set_num_threads(threads)
            y = lk.entmax15(x)
            results.append((lk.sparsemax(x), y, lk.entmax_bisect(x, 1.7), lk.entmax15_backward(y, dy)))
        for r in results[1:]:
            for a, b in zip(results[0], r, strict=True):
                np.testing.assert_array_equal(a, b)
    finally:
        lk.set_num_threads(previous)


# ---------------------------------------------------------------- backward (VJP)


def autograd_vjp(fn, x, dy, temperature=1.0):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    fn(xt / temperature).backward(torch.tensor(dy, dtype=torch.float64))
    return xt.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "op", [("sparsemax", lk.sparsemax, lk.sparsemax_backward, torch_sparsemax),
           ("entmax15", lk.entmax15, lk.entmax15_backward, torch_entmax15)], ids=lambda o: o[0]
)
def test_backward_matches_autograd(isa, op, dtype):
    _, fwd, bwd, tfn = op
    rng = np.random.default_rng(12)
    for n in (1, 2, 7, 17, 64, 300):
        x = rng.standard_normal((4, n)) * 2
        dy = rng.standard_normal((4, n))
        for t in (1.0, 0.4):
            y = fwd(x.astype(dtype), temperature=t)
            dx = bwd(y, dy.astype(dtype), temperature=t)
            assert dx.dtype == dtype
            atol = 1e-12 if dtype == np.float64 else 2e-5
            np.testing.assert_allclose(dx, autograd_vjp(tfn, x, dy, t), rtol=0, atol=atol, err_msg=f"n={n} T={t}")
            off = y == 0
            assert (dx[off] == 0).all()  # the VJP vanishes off the support


def test_backward_identities(isa):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((5, 80))
    dy = rng.standard_normal((5, 80))
    y2, y15 = lk.sparsemax(x), lk.entmax15(x)
    np.testing.assert_array_equal(lk.entmax_bisect_backward(y2, dy, 2.0), lk.sparsemax_backward(y2, dy))
    np.testing.assert_array_equal(lk.entmax_bisect_backward(y15, dy, 1.5), lk.entmax15_backward(y15, dy))
    ys = lk.entmax_bisect(x, 1.0)
    np.testing.assert_allclose(lk.entmax_bisect_backward(ys, dy, 1.0), autograd_vjp(lambda t: torch.softmax(t, -1), x, dy),
                               rtol=0, atol=1e-14)
    # the gradient is orthogonal to the all-ones direction (outputs always sum to 1)
    for dx in (lk.sparsemax_backward(y2, dy), lk.entmax15_backward(y15, dy)):
        np.testing.assert_allclose(dx.sum(-1), 0, atol=1e-13)


@pytest.mark.parametrize("alpha", [1.3, 1.5, 2.0, 3.0])
def test_entmax_bisect_backward_finite_differences(isa, alpha):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((3, 25)) * 2
    dy = rng.standard_normal((3, 25))
    y = ref_entmax_alpha(x, alpha)
    dx = lk.entmax_bisect_backward(y, dy, alpha)
    h = 1e-6
    for _ in range(4):
        v = rng.standard_normal(x.shape)
        fd = ((ref_entmax_alpha(x + h * v, alpha) - ref_entmax_alpha(x - h * v, alpha)) / (2 * h) * dy).sum(-1)
        np.testing.assert_allclose((dx * v).sum(-1), fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_layouts_and_special_values(isa, dtype):
    rng = np.random.default_rng(15)
    x = rng.standard_normal((4, 6, 30)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    for fwd, bwd in ((lk.sparsemax, lk.sparsemax_backward), (lk.entmax15, lk.entmax15_backward),
                     (lambda a, axis=-1: lk.entmax_bisect(a, 1.3, axis), lambda a, b, axis=-1, **k: lk.entmax_bisect_backward(a, b, 1.3, axis, **k))):
        y = fwd(x, axis=1)
        expected = np.moveaxis(bwd(np.ascontiguousarray(np.moveaxis(y, 1, -1)), np.ascontiguousarray(np.moveaxis(dy, 1, -1))), -1, 1)
        np.testing.assert_array_equal(bwd(y, dy, axis=1), expected)
        g = dy.copy()
        assert bwd(y, g, axis=1, out=g) is g  # in place over dy
        np.testing.assert_array_equal(g, expected)
        yflat = fwd(x.reshape(4, -1))
        merged = bwd(yflat, dy.reshape(4, -1)).reshape(x.shape)
        np.testing.assert_array_equal(bwd(yflat.reshape(x.shape), dy, axis=(1, 2)), merged)
        yy = fwd(x)
        # NaN in dy poisons the row, as autograd through the entmax package
        bad = dy.copy()
        bad[0, 0, 0] = np.nan
        assert np.isnan(bwd(yy, bad)[0, 0]).all()
        assert np.isfinite(bwd(yy, bad)[1:]).all()
    assert lk.sparsemax_backward(np.empty((2, 0)), np.empty((2, 0))).shape == (2, 0)
    r16 = lk.entmax15_backward(lk.entmax15(x.astype(np.float16)), dy.astype(np.float16))
    assert r16.dtype == np.float16


# ---------------------------------------------------------------- properties


finite_rows = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 4), st.integers(1, 40)),
    elements=st.floats(-50, 50, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=finite_rows, t=st.floats(0.05, 20))
def test_property_simplex_and_order(x, t):
    for f in (lk.sparsemax, lk.entmax15, lambda a, temperature: lk.entmax_bisect(a, 1.6, temperature=temperature)):
        y = f(x, temperature=t)
        assert (y >= 0).all()
        np.testing.assert_allclose(y.sum(-1), 1, atol=1e-12)
        # monotone: a larger logit never gets less mass
        order = np.argsort(x, axis=-1, kind="stable")
        ys = np.take_along_axis(y, order, -1)
        assert (np.diff(ys, axis=-1) >= 0).all()
        # the argmax always has mass
        assert (np.take_along_axis(y, x.argmax(-1)[:, None], -1) > 0).all()


@settings(max_examples=150, deadline=None)
@given(x=finite_rows, t1=st.floats(0.05, 20), t2=st.floats(0.05, 20))
def test_property_sparser_at_lower_temperature(x, t1, t2):
    lo, hi = min(t1, t2), max(t1, t2)
    for f in (lk.sparsemax, lk.entmax15):
        s_lo = (f(x, temperature=lo) > 1e-12).sum(-1)
        s_hi = (f(x, temperature=hi) > 1e-12).sum(-1)
        assert (s_lo <= s_hi).all()


@settings(max_examples=150, deadline=None)
@given(x=finite_rows, shift=st.floats(-100, 100))
def test_property_shift_invariance(x, shift):
    for f in (lk.sparsemax, lk.entmax15):
        np.testing.assert_allclose(f(x + shift), f(x), rtol=0, atol=1e-11)


@settings(max_examples=100, deadline=None)
@given(x=finite_rows)
def test_property_bisect_agrees_with_exact(x):
    np.testing.assert_allclose(lk.entmax_bisect(x, 2.0), lk.sparsemax(x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lk.entmax_bisect(x, 1.5), lk.entmax15(x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lk.sparsemax(x), ref_sparsemax(x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lk.entmax15(x), ref_entmax15(x), rtol=0, atol=1e-12)


OVERFLOW_ROWS = {
    np.float32: [[3e38, 2.9e38, -3e38], [-3e38, -1e38], [3.4e38, 3.3e38], [3e38, -3e38, 3e38], [-3e38, -3.3e38, 1.0, 0.5]],
    np.float64: [[1.7e308, 1.6e308, -1.7e308], [-1.7e308, -1e308], [1.79e308, 1.7e308], [1.7e308, -1.7e308, 1.7e308],
                 [-1.7e308, -1.79e308, 1.0, 0.5]],
}


@pytest.mark.parametrize("op", ["sparsemax", "entmax15", "bisect15", "bisect13"])
@pytest.mark.parametrize("temperature", [0.5, 0.1, 2.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_temperature_overflow(isa, dtype, temperature, op):
    # x / T beyond the largest float (T < 1): was [0.5, 0.5] for [3e38, 2.9e38] at T = 0.5 (both
    # c x = inf, taken for +inf entries) and NaN for [-3e38, -1e38] at T = 0.1. Reference: the
    # shift-invariant ops on c (x - max), exact in float64 for float32 x; entries more than 1e6
    # below the max are clipped there (never in the support).
    fn, ref = {
        "sparsemax": (lk.sparsemax, ref_sparsemax),
        "entmax15": (lk.entmax15, ref_entmax15),
        "bisect15": (lambda x, **k: lk.entmax_bisect(x, 1.5, **k), ref_entmax15),
        "bisect13": (lambda x, **k: lk.entmax_bisect(x, 1.3, **k), lambda z: ref_entmax_alpha(z, 1.3)),
    }[op]
    c = float(np.asarray(1 / temperature, dtype))
    for row in OVERFLOW_ROWS[dtype]:
        x = np.array(row, dtype)
        with np.errstate(over="ignore"):
            z = (x.astype(np.float64) - x.max()) * c
        y = fn(x, temperature=temperature)
        assert not np.isnan(y).any()
        np.testing.assert_allclose(y, ref(np.maximum(z, -1e6)), rtol=0, atol=8 * np.finfo(dtype).eps)
