"""One definition each: the face-to-centre interpolation of the winds
(``operators.centred_winds``) and the base state's density and mass weight
(``thermo.base_density``, ``thermo.mass_weight``), used alike by the core on
JAX arrays and by the edges on NumPy arrays, bit for bit."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from xlex import diagnostics, runner
from xlex.core import operators as op
from xlex.core import thermo
from xlex.core.grid import Grid
from xlex.core.physics import dynamic_smagorinsky
from xlex.core.state import BaseState

NZ, NY, NX = 4, 7, 6


@pytest.fixture
def winds():
    rng = np.random.default_rng(3)
    u = rng.normal(size=(2, NZ, NY, NX))
    v = rng.normal(size=(2, NZ, NY, NX))
    w = rng.normal(size=(2, NZ + 1, NY, NX))
    w[:, [0, -1]] = 0.0
    return u, v, w


def test_centred_winds_are_the_means_of_the_two_faces(winds):
    u, v, w = winds
    uc, vc, wc = op.centred_winds(u, v, w, np)
    assert uc.shape == vc.shape == wc.shape == (2, NZ, NY, NX)
    np.testing.assert_array_equal(uc[..., :-1], 0.5 * (u[..., :-1] + u[..., 1:]))
    np.testing.assert_array_equal(uc[..., -1], 0.5 * (u[..., -1] + u[..., 0]))  # periodic
    np.testing.assert_array_equal(vc[..., -1, :], 0.5 * (v[..., -1, :] + v[..., 0, :]))
    np.testing.assert_array_equal(wc, 0.5 * (w[:, 1:] + w[:, :-1]))


def test_centred_winds_numpy_and_jax_agree_bit_for_bit(winds):
    got_np = op.centred_winds(*winds, np)
    got_jax = op.centred_winds(*(jnp.asarray(a) for a in winds))
    assert all(isinstance(a, np.ndarray) for a in got_np)
    for a, b in zip(got_np, got_jax, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_centred_horizontal_winds_work_on_one_level(winds):
    u, v, _ = winds
    uc, vc = op.centred_horizontal_winds(u[:, 0], v[:, 0], np)
    full = op.centred_winds(*winds, np)
    np.testing.assert_array_equal(uc, full[0][:, 0])
    np.testing.assert_array_equal(vc, full[1][:, 0])


def test_the_edges_and_the_dynamic_model_use_the_one_interpolation(winds):
    u, v, w = winds
    expected = op.centred_winds(u, v, w, np)
    for got, want in zip(diagnostics.centre_velocities(u, v, w), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert dynamic_smagorinsky.centred_velocity is op.centred_winds
    grid = Grid(nx=NX, ny=NY, nz=NZ, dx=100.0, dy=50.0, dz=20.0)
    uc, vc, wc = op.centred_winds(np.abs(u), np.abs(v), np.abs(w), np)
    assert runner.courant_number(u, v, w, grid, 2.0) == 2.0 * np.max(uc / 100.0 + vc / 50.0
                                                                       + wc / 20.0)
    jax_cfl = runner.courant_number(*(jnp.asarray(a) for a in winds), grid, 2.0, jnp)
    assert float(jax_cfl) == runner.courant_number(u, v, w, grid, 2.0)


def test_base_state_mass_is_the_one_mass_weight():
    zh = np.linspace(25.0, 975.0, 20)
    th0 = 300.0 + 0.003 * zh
    qv0 = 0.012 * np.exp(-zh / 2000.0)
    pi0 = 1.0 - 9.81 * zh / (1005.7 * 300.0)
    base = BaseState(th0=jnp.asarray(th0), qv0=jnp.asarray(qv0), pi0=jnp.asarray(pi0))
    rho0 = thermo.base_density(th0, qv0, pi0)
    assert isinstance(rho0, np.ndarray)
    np.testing.assert_array_equal(np.asarray(base.rho0), rho0)
    np.testing.assert_array_equal(np.asarray(base.thrho0),
                                  thermo.density_potential_temperature(th0, qv0))
    np.testing.assert_array_equal(np.asarray(base.mass), thermo.mass_weight(rho0, th0, qv0))
    np.testing.assert_array_equal(diagnostics.mass_weight(rho0, th0, qv0),
                                  np.asarray(base.mass))
    np.testing.assert_allclose(thermo.mass_weight(rho0, th0, qv0), rho0 * th0
                               * (1.0 + (461.5 / 287.04 - 1.0) * qv0), rtol=1e-15)
