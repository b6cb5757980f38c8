"""The loss of online training (xlex/ml/losses.py, paper eqs. 22-26).

Every term is compared with a direct computation written here from the paper's
formulas, with explicit loops over the grid points, on small random states of
3 x 4 x 5 cells with three different spacings (so a swapped axis shows):

- eq. 25, f_scale(F) = (max F - min F) / ([max F] - [min F])^3, the range of F
  at each point over the training samples over the cube of its range over the
  point's level, and zero on a level that never varies;
- eq. 22, 1/2 f(F) (pred F - truth F)^2 for th', qv', u, v, w;
- eq. 23, f(qv) times -qv where qv < 0, else 0;
- eq. 24, f(lap G) (lap pred G - lap truth G)^2 for G = th', qv', each
  Laplacian taken separately (the module takes that of the difference);
- eq. 26, each term averaged over the N look-ahead states, and their sum.

Each product is averaged over the grid points of its field (the module's
documented convention). The perturbations th' = th - th0 and qv' = qv - qv0 are
formed here explicitly from the base state. The 7-point Laplacian is checked
against eigenfunctions of the discrete operator (sines in the periodic x and y,
cosines in z that satisfy the walls' zero gradient), the continuous Laplacian,
and a quadratic.
"""

import itertools

import jax
import numpy as np
import pytest

from xlex.core.state import BaseState, State
from xlex.ml.losses import (
    LAPLACIAN_FIELDS,
    L2_FIELDS,
    TERMS,
    LossScales,
    l2_loss,
    laplacian,
    laplacian_loss,
    loss_scales,
    negative_qv_loss,
    rollout_loss,
    scale_factor,
)

NZ, NY, NX = 3, 4, 5
#: (dx, dy, dz) [m], all different.
SPACING = (200.0, 300.0, 50.0)


# --------------------------------------------------------------------------- references


def reference_laplacian(a, spacing):
    """The 7-point Laplacian of ``a`` (nz, ny, nx) point by point: periodic
    neighbours in x and y; at the walls the missing neighbour is the cell itself
    (a mirrored ghost cell: zero gradient through the wall)."""
    dx, dy, dz = spacing
    nz, ny, nx = a.shape
    out = np.empty_like(a)
    for k, j, i in itertools.product(range(nz), range(ny), range(nx)):
        c = a[k, j, i]
        east, west = a[k, j, (i + 1) % nx], a[k, j, (i - 1) % nx]
        north, south = a[k, (j + 1) % ny, i], a[k, (j - 1) % ny, i]
        above = a[k + 1, j, i] if k + 1 < nz else c
        below = a[k - 1, j, i] if k > 0 else c
        out[k, j, i] = ((east - 2 * c + west) / dx**2 + (north - 2 * c + south) / dy**2
                        + (above - 2 * c + below) / dz**2)
    return out


def reference_scale(samples):
    """Eq. 25 for ``samples`` (sample, level, y, x), point by point."""
    samples = np.asarray(samples)
    _, nz, ny, nx = samples.shape
    out = np.zeros((nz, ny, nx))
    for k in range(nz):
        level_range = samples[:, k].max() - samples[:, k].min()
        for j, i in itertools.product(range(ny), range(nx)):
            point_range = samples[:, k, j, i].max() - samples[:, k, j, i].min()
            out[k, j, i] = point_range / level_range**3 if level_range > 0 else 0.0
    return out


def point_mean(values):
    """The mean over every point, summed one by one."""
    values = np.asarray(values)
    total = 0.0
    for index in np.ndindex(values.shape):
        total += values[index]
    return total / values.size


def perturbations(state, base):
    """th', qv', u, v, w of one state (nz, ny, nx) with its base state (nz,)."""
    th0 = np.asarray(base.th0)[:, None, None]
    qv0 = np.asarray(base.qv0)[:, None, None]
    return {"th": np.asarray(state.th) - th0, "qv": np.asarray(state.qv) - qv0,
            "u": np.asarray(state.u), "v": np.asarray(state.v), "w": np.asarray(state.w)}


def reference_terms(pred, truth, base, scales):
    """Eqs. 22-24 for one predicted and one true state, point by point."""
    p, t = perturbations(pred, base), perturbations(truth, base)
    l2 = 0.0
    for name, f in zip(("th", "qv", "u", "v", "w"), scales.l2, strict=True):
        f = np.asarray(f)
        l2 += point_mean([f[ix] * 0.5 * (p[name][ix] - t[name][ix]) ** 2
                          for ix in np.ndindex(f.shape)])
    f = np.asarray(scales.negative_qv)
    qv = np.asarray(pred.qv)
    negative = point_mean([f[ix] * (-qv[ix] if qv[ix] < 0 else 0.0)
                           for ix in np.ndindex(qv.shape)])
    lap = 0.0
    for name, f in zip(("th", "qv"), scales.laplacian, strict=True):
        f = np.asarray(f)
        lp = reference_laplacian(p[name], scales.spacing)
        lt = reference_laplacian(t[name], scales.spacing)
        lap += point_mean([f[ix] * (lp[ix] - lt[ix]) ** 2 for ix in np.ndindex(f.shape)])
    return {"l2": l2, "negative_qv": negative, "laplacian": lap}


# --------------------------------------------------------------------------- examples


def random_base(rng):
    return BaseState(th0=300.0 + 3.0 * np.arange(NZ) + rng.uniform(size=NZ),
                     qv0=np.linspace(8e-3, 2e-3, NZ), pi0=np.linspace(1.0, 0.95, NZ))


def random_states(rng, lead, base, negative=True):
    """States with leading axes ``lead`` around ``base`` (rigid-wall w); with
    ``negative``, some qv below zero."""
    shape = (*lead, NZ, NY, NX)
    w = rng.normal(size=(*lead, NZ + 1, NY, NX))
    w[..., 0, :, :] = w[..., -1, :, :] = 0.0
    qv = np.asarray(base.qv0)[:, None, None] * rng.uniform(0.5, 1.5, size=shape)
    if negative:
        qv = qv - 4e-3 * (rng.uniform(size=shape) < 0.2)
    return State(u=rng.normal(size=shape), v=3.0 * rng.normal(size=shape), w=w,
                 th=np.asarray(base.th0)[:, None, None] + rng.normal(size=shape), qv=qv,
                 pi=1e-4 * rng.normal(size=shape))


def take(state, index):
    return jax.tree.map(lambda a: np.asarray(a)[index], state)


@pytest.fixture(scope="module")
def example():
    """Training states of 2 windows x 3 steps (one base state per window), their
    scales, and a predicted and a true look-ahead of 3 states of the first window."""
    rng = np.random.default_rng(0)
    bases = [random_base(rng), random_base(rng)]
    base = BaseState(**{k: np.stack([getattr(b, k) for b in bases])
                        for k in ("th0", "qv0", "pi0")})
    states = State(**{k: np.stack([getattr(random_states(rng, (3,), b, negative=False), k)
                                   for b in bases]) for k in ("u", "v", "w", "th", "qv", "pi")})
    scales = loss_scales(states, base, SPACING)
    truth = random_states(rng, (3,), bases[0], negative=False)
    pred = random_states(rng, (3,), bases[0])
    return {"states": states, "base": base, "bases": bases, "scales": scales, "truth": truth,
            "pred": pred}


# --------------------------------------------------------------------------- eq. 25


def test_scale_factor_is_eq_25(example):
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(7, NZ, NY, NX)) * np.array([1.0, 10.0, 0.1])[:, None, None]
    np.testing.assert_allclose(scale_factor(samples, axes=(0,)), reference_scale(samples),
                               rtol=1e-13, atol=0)
    # two sample axes are the same samples
    np.testing.assert_allclose(scale_factor(samples[:6].reshape(2, 3, NZ, NY, NX), axes=(0, 1)),
                               reference_scale(samples[:6]), rtol=1e-13, atol=0)


def test_scale_factor_is_zero_on_a_level_that_never_varies():
    rng = np.random.default_rng(2)
    samples = rng.normal(size=(4, NZ, NY, NX))
    samples[:, 1] = 7.5  # the same value everywhere on level 1, in every sample
    samples[:, 2, :, :2] = 1.0  # level 2 varies, but not at some points
    f = scale_factor(samples, axes=(0,))
    assert np.all(np.isfinite(f))
    np.testing.assert_array_equal(f[1], 0.0)
    np.testing.assert_array_equal(f[2, :, :2], 0.0)
    assert np.all(f[0] > 0) and np.all(f[2, :, 2:] > 0)
    np.testing.assert_allclose(f, reference_scale(samples), rtol=1e-13, atol=0)


def test_scale_factor_scales_as_one_over_the_square_of_the_units():
    """f(c F) = f(F) / c^2: the L2 and Laplacian terms do not depend on units."""
    rng = np.random.default_rng(3)
    samples = rng.normal(size=(5, NZ, NY, NX))
    np.testing.assert_allclose(scale_factor(1e-3 * samples, axes=(0,)),
                               1e6 * scale_factor(samples, axes=(0,)), rtol=1e-12)


def test_loss_scales_are_eq_25_of_the_perturbations_and_their_laplacians(example):
    states, bases, scales = example["states"], example["bases"], example["scales"]
    samples = {name: [] for name in ("th", "qv", "u", "v", "w")}
    for window, step in itertools.product(range(2), range(3)):
        for name, field in perturbations(take(states, (window, step)), bases[window]).items():
            samples[name].append(field)
    assert isinstance(scales, LossScales)
    assert scales.spacing == SPACING
    assert L2_FIELDS == ("th", "qv", "u", "v", "w") and LAPLACIAN_FIELDS == ("th", "qv")
    for name, f in zip(L2_FIELDS, scales.l2, strict=True):
        np.testing.assert_allclose(f, reference_scale(samples[name]), rtol=1e-12, atol=0,
                                   err_msg=name)
    np.testing.assert_allclose(scales.negative_qv, reference_scale(samples["qv"]), rtol=1e-12)
    for name, f in zip(LAPLACIAN_FIELDS, scales.laplacian, strict=True):
        laps = [reference_laplacian(s, SPACING) for s in samples[name]]
        np.testing.assert_allclose(f, reference_scale(laps), rtol=1e-10, atol=0, err_msg=name)
    # w is zero on the walls in every state: no weight there, elsewhere some
    w_scale = np.asarray(scales.l2[4])
    assert w_scale.shape == (NZ + 1, NY, NX)
    np.testing.assert_array_equal(w_scale[[0, -1]], 0.0)
    assert np.all(w_scale[1:-1] > 0)


def test_loss_scales_take_one_base_state_for_all_samples(example):
    """Samples with only a step axis and an unbatched base state."""
    states, bases = example["states"], example["bases"]
    first = take(states, 0)
    scales = loss_scales(first, bases[0], SPACING)
    th = [perturbations(take(first, s), bases[0])["th"] for s in range(3)]
    np.testing.assert_allclose(scales.l2[0], reference_scale(th), rtol=1e-12)


# --------------------------------------------------------------------------- the Laplacian


def test_the_laplacian_is_the_7_point_stencil_with_periodic_sides_and_insulated_walls():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(NZ, NY, NX))
    want = reference_laplacian(a, SPACING)
    np.testing.assert_allclose(laplacian(a, SPACING), want, rtol=1e-12,
                               atol=1e-12 * np.abs(want).max())
    # leading axes are samples
    batch = rng.normal(size=(2, NZ, NY, NX))
    np.testing.assert_allclose(laplacian(batch, SPACING, np)[1],
                               reference_laplacian(batch[1], SPACING), rtol=1e-12, atol=1e-15)


def test_the_laplacian_of_a_sine_and_cosine_field_is_analytic():
    """sin(2 pi x / Lx) sin(4 pi y / Ly) cos(pi z / Lz) at the cell centres is an
    eigenfunction of the discrete operator (the cosine has zero gradient at the
    walls), with eigenvalue -sum (2 - 2 cos(k h)) / h^2, exactly; and that tends
    to the continuous -(kx^2 + ky^2 + kz^2) as the cells shrink (second order)."""
    errors = []
    for n in (32, 64):
        nx, ny, nz = n, n // 2, n // 4
        dx, dy, dz = 1000.0 / n, 700.0 / (n // 2), 500.0 / (n // 4)
        x, y, z = ((np.arange(m) + 0.5) * h for m, h in ((nx, dx), (ny, dy), (nz, dz)))
        k = (2 * np.pi / (nx * dx), 4 * np.pi / (ny * dy), np.pi / (nz * dz))
        a = (np.cos(k[2] * z)[:, None, None] * np.sin(k[1] * y)[None, :, None]
             * np.sin(k[0] * x)[None, None, :])
        lap = np.asarray(laplacian(a, (dx, dy, dz)))
        discrete = -sum((2 - 2 * np.cos(kk * h)) / h**2 for kk, h in zip(k, (dx, dy, dz),
                                                                          strict=True))
        np.testing.assert_allclose(lap, discrete * a, rtol=0, atol=1e-11 * abs(discrete))
        continuous = -sum(kk**2 for kk in k)
        errors.append(np.abs(lap - continuous * a).max() / abs(continuous))
    assert errors[0] < 0.05
    assert 3.5 < errors[0] / errors[1] < 4.5, errors  # halving h quarters the error


def test_the_laplacian_of_a_quadratic_is_its_constant_second_derivative():
    """a = 3 z^2 / dz^2 + 2 x y: 6 / dz^2 away from the walls (x y is not periodic,
    so only the z part is taken on a field constant in x and y)."""
    dz = 50.0
    z = (np.arange(6) + 0.5) * dz
    a = np.broadcast_to((3.0 * z**2)[:, None, None], (6, 4, 4))
    lap = np.asarray(laplacian(a, (100.0, 100.0, dz)))
    np.testing.assert_allclose(lap[1:-1], 6.0, rtol=1e-12)
    # at the walls the mirrored cell removes the missing neighbour's curvature
    np.testing.assert_allclose(lap[0], 3.0 * (z[1]**2 - z[0]**2) / dz**2, rtol=1e-12)


# --------------------------------------------------------------------------- eqs. 22-26


def test_each_term_is_eqs_22_to_24(example):
    scales, base = example["scales"], example["bases"][0]
    pred, truth = take(example["pred"], 1), take(example["truth"], 1)
    want = reference_terms(pred, truth, base, scales)
    assert want["negative_qv"] > 0 and want["l2"] > 0 and want["laplacian"] > 0
    np.testing.assert_allclose(float(l2_loss(pred, truth, scales)), want["l2"], rtol=1e-12)
    np.testing.assert_allclose(float(negative_qv_loss(pred, scales)), want["negative_qv"],
                               rtol=1e-12)
    np.testing.assert_allclose(float(laplacian_loss(pred, truth, scales)), want["laplacian"],
                               rtol=1e-10)


def test_rollout_loss_is_eq_26(example):
    scales, base = example["scales"], example["bases"][0]
    pred, truth = example["pred"], example["truth"]
    per_state = [reference_terms(take(pred, k), take(truth, k), base, scales) for k in range(3)]
    want = {t: sum(terms[t] for terms in per_state) / 3 for t in TERMS}
    want["total"] = sum(want[t] for t in TERMS)
    for got in (rollout_loss(pred, truth, scales), jax.jit(rollout_loss)(pred, truth, scales)):
        assert set(got) == {"l2", "negative_qv", "laplacian", "total"}
        for name, value in want.items():
            np.testing.assert_allclose(float(got[name]), value, rtol=1e-10, err_msg=name)


def test_identical_states_have_zero_loss(example):
    scales, truth = example["scales"], example["truth"]
    terms = rollout_loss(truth, truth, scales)
    for name in ("l2", "negative_qv", "laplacian", "total"):
        assert float(terms[name]) == 0.0, name


def test_the_negative_moisture_penalty_is_zero_for_non_negative_qv(example):
    scales, pred = example["scales"], take(example["pred"], 0)
    qv = np.asarray(pred.qv)
    assert qv.min() < 0  # the example has negative values
    for fixed in (np.maximum(qv, 0.0), np.abs(qv), np.zeros_like(qv)):
        clean = State(u=pred.u, v=pred.v, w=pred.w, th=pred.th, qv=fixed, pi=pred.pi)
        assert float(negative_qv_loss(clean, scales)) == 0.0
    # one negative point costs its weight times -qv over the number of points
    one = np.abs(qv)
    one[1, 2, 3] = -2e-3
    clean = State(u=pred.u, v=pred.v, w=pred.w, th=pred.th, qv=one, pi=pred.pi)
    np.testing.assert_allclose(float(negative_qv_loss(clean, scales)),
                               np.asarray(scales.negative_qv)[1, 2, 3] * 2e-3 / qv.size,
                               rtol=1e-13)


def test_the_l2_and_laplacian_terms_do_not_depend_on_the_units(example):
    """Scaling the winds by c (m/s to km/s, say) and recomputing f leaves the
    wind terms unchanged: f ~ 1/c^2 against errors ~ c^2."""
    states, base, pred, truth = (example[k] for k in ("states", "base", "pred", "truth"))
    c = 1e-3

    def winds_scaled(s):
        return State(u=c * s.u, v=c * s.v, w=c * s.w, th=s.th, qv=s.qv, pi=s.pi)

    scales = loss_scales(winds_scaled(states), base, SPACING)
    got = rollout_loss(winds_scaled(pred), winds_scaled(truth), scales)
    want = rollout_loss(pred, truth, example["scales"])
    for name in TERMS:
        np.testing.assert_allclose(float(got[name]), float(want[name]), rtol=1e-10)


def test_level_floor_bounds_the_scale_of_a_quiet_level():
    """With level_floor, a level whose range is 1e-4 of the field's range gets
    f at most 1/floor^3 times a lively level's; without it, 1e12 times."""
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(8, 3, 4, 4))
    samples[:, 0] *= 1e-4
    paper = scale_factor(samples, axes=(0,))
    floored = scale_factor(samples, axes=(0,), level_floor=0.1)
    np.testing.assert_array_equal(scale_factor(samples, axes=(0,), level_floor=0.0), paper)
    assert paper[0].max() / paper[1].max() > 1e6
    assert floored[0].max() / floored[1:].max() < 1e3
    np.testing.assert_allclose(floored[1:], paper[1:])
