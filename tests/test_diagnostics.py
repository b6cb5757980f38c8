"""Array core of the diagnostics: metrics, (MS-)SSIM, KE profile, coarse-graining."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from xlex import diagnostics as dg
from xlex.core.errors import DatasetError, GridMismatchError, OptionError


def smooth_field(shape, sigma=3.0, seed=0):
    """Random field smoothed along its last two axes (unit variance, nonzero mean)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    sig = (0,) * (len(shape) - 2) + (sigma, sigma)
    x = gaussian_filter(x, sig, mode="wrap")
    return 5.0 + x / x.std()


def reference_ms_ssim(a, b, L, scales):
    """Independent MS-SSIM: scipy reflect-padded Gaussian filtering, cropped to valid windows."""
    w = np.asarray(dg.MS_SSIM_WEIGHTS[:scales])
    if scales < 5:
        w = w / w.sum()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2

    def filt(x):
        return gaussian_filter(x, 1.5, truncate=3.5, mode="reflect")[5:-5, 5:-5]

    out = 1.0
    for j in range(scales):
        mu_a, mu_b = filt(a), filt(b)
        va = filt(a * a) - mu_a**2
        vb = filt(b * b) - mu_b**2
        cov = filt(a * b) - mu_a * mu_b
        cs = (2 * cov + c2) / (va + vb + c2)
        lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
        val = (lum * cs).mean() if j == scales - 1 else cs.mean()
        out *= max(val, 0.0) ** w[j]
        p, q = a.shape[0] // 2, a.shape[1] // 2
        a = a[: 2 * p, : 2 * q].reshape(p, 2, q, 2).mean(axis=(1, 3))
        b = b[: 2 * p, : 2 * q].reshape(p, 2, q, 2).mean(axis=(1, 3))
    return out


# --------------------------------------------------------------------------- metrics


def test_correlation_and_mse_identities():
    a = smooth_field((3, 4, 20, 24))
    r = dg.correlation(a, a, axis=(-3, -2, -1))
    assert r.shape == (3,)
    np.testing.assert_allclose(r, 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(dg.mse(a, a), 0.0)
    np.testing.assert_allclose(dg.correlation(a, -2.0 * a + 7.0), -1.0, atol=1e-12)


def test_correlation_and_mse_values():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 3, 5, 6))
    b = 0.5 * a + rng.standard_normal(a.shape)
    r = dg.correlation(a, b)
    expect = [np.corrcoef(a[t].ravel(), b[t].ravel())[0, 1] for t in range(4)]
    np.testing.assert_allclose(r, expect, rtol=1e-12)
    np.testing.assert_allclose(dg.mse(a, b), ((a - b) ** 2).mean(axis=(1, 2, 3)), rtol=1e-13)
    # a single axis, in the middle
    np.testing.assert_allclose(dg.mse(a, b, axis=1), ((a - b) ** 2).mean(axis=1), rtol=1e-13)


def test_correlation_constant_field_is_nan_and_shape_mismatch_raises():
    a = np.ones((2, 3, 4, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN, and no RuntimeWarning noise
        assert np.isnan(dg.correlation(a, a)).all()
        varying = np.arange(120.0).reshape(2, 3, 4, 5)
        r = dg.correlation(np.stack([a[0], varying[1]]), varying)
    assert np.isnan(r[0]) and r[1] == pytest.approx(1.0, abs=1e-14)
    with pytest.raises(GridMismatchError, match="shapes"):
        dg.mse(np.ones((2, 3, 4)), np.ones((2, 3, 5)))
    with pytest.raises(OptionError, match="out of range"):
        dg.mse(a, a, axis=(4,))


# --------------------------------------------------------------------------- SSIM


@pytest.mark.parametrize("shape,seed", [((40, 52), 0), ((23, 31), 1), ((64, 64), 2)])
def test_ssim_matches_skimage(shape, seed):
    a = smooth_field(shape, seed=seed)
    b = a + 0.4 * smooth_field(shape, sigma=1.0, seed=seed + 10)
    L = float(b.max() - b.min())
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=L)
    np.testing.assert_allclose(dg.ssim(a, b, data_range=L), ref, rtol=0, atol=1e-6)
    # the default data range is the reference's range
    np.testing.assert_allclose(dg.ssim(a, b), ref, rtol=0, atol=1e-6)


def test_ssim_batches_and_axes():
    a = smooth_field((3, 30, 40), seed=4)
    b = smooth_field((3, 30, 40), seed=5)
    batch = dg.ssim(a, b)
    loop = [dg.ssim(a[i], b[i]) for i in range(3)]
    np.testing.assert_allclose(batch, loop, rtol=1e-14)
    moved = dg.ssim(np.moveaxis(a, 0, -1), np.moveaxis(b, 0, -1), axes=(0, 1))
    np.testing.assert_allclose(moved, batch, rtol=1e-14)
    # per-item data range, as an array over the batch
    rng = np.array([1.0, 2.0, 3.0])
    per = dg.ssim(a, b, data_range=rng)
    np.testing.assert_allclose(per, [dg.ssim(a[i], b[i], data_range=rng[i]) for i in range(3)])


def test_ms_ssim_identity_five_scales():
    a = smooth_field((2, 180, 190), seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = dg.ms_ssim(a, a)
    assert s.shape == (2,)
    np.testing.assert_allclose(s, 1.0, rtol=0, atol=1e-12)


def test_ms_ssim_matches_independent_reference():
    a = smooth_field((180, 176), seed=7)
    b = a + 0.5 * smooth_field((180, 176), sigma=1.0, seed=8)
    L = float(b.max() - b.min())
    assert dg.max_scales(a.shape) == 5
    np.testing.assert_allclose(dg.ms_ssim(a, b), reference_ms_ssim(a, b, L, 5), rtol=1e-10)
    np.testing.assert_allclose(dg.ms_ssim(a, b, scales=3), reference_ms_ssim(a, b, L, 3),
                               rtol=1e-10)


def test_ms_ssim_decreases_monotonically_with_noise():
    rng = np.random.default_rng(42)
    clean = smooth_field((192, 192), sigma=6.0, seed=9)
    noise = rng.standard_normal(clean.shape)
    levels = [0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
    scores = [float(dg.ms_ssim(clean + s * noise, clean)) for s in levels]
    assert scores[0] == pytest.approx(1.0, abs=1e-12)
    assert all(x > y for x, y in zip(scores, scores[1:], strict=False)), scores


def test_ms_ssim_small_section_uses_fewer_scales():
    # the 400 m CM1 x-z section: 30 levels x 60 columns fits 2 scales
    assert dg.max_scales((30, 60)) == 2
    assert dg.max_scales((10, 60)) == 0
    a = smooth_field((30, 60), sigma=2.0, seed=11)
    b = a + 0.3 * smooth_field((30, 60), sigma=1.0, seed=12)
    with pytest.warns(UserWarning, match="only 2 of the 5 scales"):
        s = dg.ms_ssim(a, b)
    L = float(b.max() - b.min())
    np.testing.assert_allclose(s, reference_ms_ssim(a, b, L, 2), rtol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(dg.ms_ssim(a, b, scales=2), s, rtol=1e-14)
    with pytest.raises(DatasetError, match="smaller than"):
        dg.ms_ssim(a[:10], b[:10])
    with pytest.raises(OptionError, match="scales"):
        dg.ms_ssim(a, b, scales=6)


def test_ms_ssim_clips_negative_contrast_structure():
    a = smooth_field((64, 64), seed=13)
    s = dg.ms_ssim(2 * a.mean() - a, a, scales=2)  # anti-correlated: cs < 0
    assert np.isfinite(s) and s == 0.0


def test_default_data_range_fallbacks():
    a = np.stack([np.arange(16.0).reshape(4, 4), np.zeros((4, 4)), np.ones((4, 4))])
    b = np.stack([np.full((4, 4), 2.0), np.eye(4) * 3.0, np.ones((4, 4))])
    L = dg.default_data_range(a, b)
    # constant reference -> joint range; varying reference -> its range; equal constants -> 1
    np.testing.assert_array_equal(L, [15.0, 3.0, 1.0])
    np.testing.assert_allclose(dg.ssim(np.ones((12, 12)), np.ones((12, 12))), 1.0)


# --------------------------------------------------------------------------- KE profile


def test_ke_profile_analytic():
    nt, nz, ny, nx = 4, 5, 8, 12
    Lx, Ly = 1200.0, 800.0
    dx, dy = Lx / nx, Ly / ny
    kx, ky = 2 * np.pi / Lx, 2 * np.pi / Ly
    xf = np.arange(nx) * dx
    xh = xf + dx / 2
    yf = np.arange(ny) * dy
    yh = yf + dy / 2
    A = np.linspace(1.0, 3.0, nz)
    B = np.linspace(0.5, -1.0, nz)
    C = np.concatenate([[0.0], np.linspace(0.2, 0.9, nz - 1), [0.0]])
    amp = np.array([1.0, 0.5, -2.0, 1.5])  # time factor
    U0 = np.linspace(3.0, 5.0, nz)  # horizontal-mean flow: no contribution
    u = (amp[:, None, None, None] * A[None, :, None, None] * np.sin(kx * xf)[None, None, None, :]
         + U0[None, :, None, None] + np.zeros((nt, nz, ny, nx)))
    v = amp[:, None, None, None] * B[None, :, None, None] * np.cos(ky * yf)[None, None, :, None]
    v = v + np.zeros((nt, nz, ny, nx))
    w = (amp[:, None, None, None] * C[None, :, None, None]
         * np.sin(kx * xh)[None, None, None, :] * np.sin(ky * yh)[None, None, :, None])
    ke = dg.ke_profile(u, v, w, time_axis=0)
    cx2, cy2 = np.cos(kx * dx / 2) ** 2, np.cos(ky * dy / 2) ** 2  # face -> centre averaging
    Cc = 0.5 * (C[:-1] + C[1:])
    expect = np.mean(amp**2) * (A**2 * cx2 / 4 + B**2 * cy2 / 4 + Cc**2 / 8)
    np.testing.assert_allclose(ke, expect, rtol=1e-13)
    # u alone, per time: A^2 cos^2(k dx / 2) / 4
    zeros = np.zeros_like(u)
    per_time = dg.ke_profile(u, zeros, np.zeros((nt, nz + 1, ny, nx)))
    np.testing.assert_allclose(per_time, amp[:, None] ** 2 * A**2 * cx2 / 4, rtol=1e-13)


def test_ke_profile_uniform_flow_is_zero():
    nz, ny, nx = 4, 6, 8
    u = np.broadcast_to(np.linspace(1.0, 9.0, nz)[:, None, None], (nz, ny, nx))
    v = np.full((nz, ny, nx), -3.3)
    w = np.zeros((nz + 1, ny, nx))
    np.testing.assert_allclose(dg.ke_profile(u, v, w), 0.0, atol=1e-26)
    with pytest.raises(DatasetError, match="C grid"):
        dg.ke_profile(u, v, np.zeros((nz, ny, nx)))


# --------------------------------------------------------------------------- coarsen


def test_block_mean_conserves_integrals_and_checks_factors():
    rng = np.random.default_rng(5)
    th = rng.standard_normal((2, 6, 12, 18))
    c = dg.coarsen_centred(th, (3, 6, 6))
    assert c.shape == (2, 2, 2, 3)
    fine_vol, coarse_vol = 50.0 * 100.0 * 100.0, 150.0 * 600.0 * 600.0
    np.testing.assert_allclose(c.sum(axis=(1, 2, 3)) * coarse_vol,
                               th.sum(axis=(1, 2, 3)) * fine_vol, rtol=1e-13)
    np.testing.assert_allclose(c[0, 0, 0, 0], th[0, :3, :6, :6].mean(), rtol=1e-14)
    with pytest.raises(DatasetError, match="does not divide by the factor 5"):
        dg.coarsen_centred(th, (3, 6, 5))
    with pytest.raises(OptionError, match="positive integers"):
        dg.block_mean(th, (0, 1, 1))


def test_coarsen_faces_subsample_and_weight():
    rng = np.random.default_rng(6)
    nz, ny, nx = 6, 4, 8
    u = rng.standard_normal((3, nz, ny, nx))
    m = np.linspace(2.0, 1.0, nz)
    cu = dg.coarsen_u(u, (3, 2, 4), m=m)
    assert cu.shape == (3, 2, 2, 2)
    blk = u[:, 3:6, 2:4, 4]
    expect = (m[3:6, None] * blk).sum(axis=(1, 2)) / (2 * m[3:6].sum())
    np.testing.assert_allclose(cu[:, 1, 1, 1], expect, rtol=1e-14)
    # a per-member weight broadcasts over the leading axes
    mm = np.stack([m, 2 * m, m[::-1]])
    np.testing.assert_allclose(dg.coarsen_u(u, (3, 2, 4), m=mm)[2],
                               dg.coarsen_u(u[2], (3, 2, 4), m=m[::-1]), rtol=1e-14)
    cv = dg.coarsen_v(u, (3, 2, 4))
    np.testing.assert_allclose(cv[:, 0, 1, 0], u[:, :3, 2, :4].mean(axis=(1, 2)), rtol=1e-14)
    w = rng.standard_normal((3, nz + 1, ny, nx))
    cw = dg.coarsen_w(w, (3, 2, 4))
    assert cw.shape == (3, 3, 2, 2)
    np.testing.assert_allclose(cw[:, 2, 0, 1], w[:, 6, :2, 4:].mean(axis=(1, 2)), rtol=1e-14)
    with pytest.raises(DatasetError, match="walled face"):
        dg.coarsen_w(w, (4, 2, 4))


# --------------------------------------------------------------------------- NumPy vs JAX


def test_jax_arrays_give_numpy_results():
    a = smooth_field((2, 3, 30, 36), seed=20)
    b = a + 0.2 * smooth_field((2, 3, 30, 36), sigma=1.0, seed=21)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    jb0 = jb[0]  # fewer leading axes: broadcast explicitly, no rank promotion
    for fn, kw in [(dg.correlation, {}), (dg.mse, {}), (dg.ssim, {}),
                   (dg.ms_ssim, {"scales": 2}), (dg.default_data_range, {})]:
        got = fn(ja, jb, **kw)
        assert isinstance(got, jnp.ndarray), fn.__name__
        np.testing.assert_allclose(np.asarray(got), fn(a, b, **kw), rtol=1e-12,
                                   err_msg=fn.__name__)
        np.testing.assert_allclose(np.asarray(fn(ja, jb0, **kw)), fn(a, b[0], **kw),
                                   rtol=1e-12, err_msg=fn.__name__)
    u = a
    w = np.concatenate([a, a[:, :1]], axis=1)
    np.testing.assert_allclose(np.asarray(dg.ke_profile(ja, jb, jnp.asarray(w), time_axis=0)),
                               dg.ke_profile(u, b, w, time_axis=0), rtol=1e-12)
    m = np.linspace(1.0, 2.0, 30)
    np.testing.assert_allclose(
        np.asarray(dg.coarsen_array(ja, (3, 2, 6), (False, False, True), weight=jnp.asarray(m),
                                    weight_axis=-2)),
        dg.coarsen_array(a, (3, 2, 6), (False, False, True), weight=m, weight_axis=-2),
        rtol=1e-13)
    np.testing.assert_allclose(np.asarray(dg.mass_weight(jnp.asarray(m), 300.0, 0.01)),
                               dg.mass_weight(m, 300.0, 0.01), rtol=1e-14)
