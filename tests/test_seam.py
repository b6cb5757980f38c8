"""The scheme seam: physics as objects, parameters as arguments of a pure step.

- the same runs as before the seam agree with outputs written by xlex 0.1.0
  (tests/data/seam_reference_v0_1_0.nc) to round-off (1e-11);
- jax.grad with respect to a scheme's parameter through the public step
  matches a finite difference; vmap over parameters and over states;
- objects and shorthands give identical runs, bad values fail when built;
- the physics is recorded as one JSON attribute and read back exactly;
- a store written by xlex 0.1.0 resumes and matches the uninterrupted run;
- a second integrate of one configuration compiles nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import xlex
from xlex import runner
from xlex.core.errors import OptionError, OptionTypeError, XlexError
from xlex.core.grid import Grid
from xlex.core.initial import moist_base_state, warm_bubble_state
from xlex.core.model import Physics, make_step, parameters
from xlex.core.stepping import advance
from xlex.options import PHYSICS_ATTR, recorded_physics, resolve_physics

DATA = Path(__file__).parent / "data"
REFERENCE = DATA / "seam_reference_v0_1_0.nc"
LEGACY_STORE = DATA / "legacy_store_v0_1_0.nc"

#: xlex 0.1's advection: absolute WENO regularisation, no moisture limiter.
OLD = dict(weno_regularisation="absolute", positive_moisture=False)

#: The runs of tests/data/make_seam_reference.py, as objects.
REFERENCE_PHYSICS = {
    "none": Physics(advection=xlex.Advection(**OLD)),
    "smagorinsky": Physics(advection=xlex.Advection(**OLD),
                           sgs=xlex.Smagorinsky(cs=0.2, prandtl=0.4)),
    "dynamic": Physics(advection=xlex.Advection(**OLD),
                       sgs=xlex.DynamicSmagorinsky(stability=False)),
    "bulk": Physics(advection=xlex.Advection(**OLD), sgs=xlex.Smagorinsky(),
                    surface=xlex.BulkSurface(surface_potential_temperature=302.0,
                                             roughness_length=0.05,
                                             moisture_availability=0.5)),
    "coriolis": Physics(advection=xlex.Advection(**OLD),
                        rotation=xlex.FPlane(f=1e-3, geostrophic_wind=(2.0, -1.0))),
    "bicgstab_weno": Physics(advection=xlex.Advection(momentum="weno5", vertical_order=3, **OLD),
                             pressure=xlex.PressureSolver(method="bicgstab")),
}


@pytest.fixture(scope="module")
def bubble():
    return xlex.cases.warm_bubble(theta_c=5.0, dx=1000.0)


@pytest.fixture(scope="module")
def reference():
    with xr.open_dataset(REFERENCE) as ref:
        return ref.load()


def _relative_error(a, b):
    """max |a - b| / max |b|."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(float(np.max(np.abs(b))), 1e-300)
    return float(np.max(np.abs(a - b))) / scale


def _l2_relative_error(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _reference_error(name, field, a, b):
    """The error measure of one field against the 0.1.0 output and its bound.

    The prognostic fields and every flux agree to 1e-11 of their largest value.
    They agreed to 1.4e-13 while the arithmetic was that of 0.1.0. Writing the
    Runge-Kutta stages as x + a (x0 - x) instead of a x0 + b x (it removed a
    float32 warm bias) changed the float64 results by round-off, which 60
    steps grow to at most 1.2e-12 (the surface stress). Two exceptions, both
    round-off made larger by the quantity itself. K_m and K_h pass through
    sqrt(1 - N^2 / (Pr |S|^2)) near its zero, so they are checked in the L2
    norm (3.2e-13, then 4.0e-12 after the rewrite). And pi' is defined only to
    the solve's tolerance (1e-10): a change of round-off (the rewrite, or
    BiCGSTAB's stopping rule on the true residual) moves the Krylov iterates
    at that level (2.1e-12 with PCG, 1.7e-11 with BiCGSTAB).
    """
    if field in ("km", "kh"):
        return _l2_relative_error(a, b), 1e-11
    if field == "pipert":
        return _relative_error(a, b), 1e-10
    return _relative_error(a, b), 1e-11


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REFERENCE_PHYSICS))
def test_runs_agree_with_the_outputs_of_xlex_0_1(bubble, reference, name):
    out = bubble.lex.integrate("10min", dt=10.0, output_every="5min", precision="float64",
                               progress=False, physics=REFERENCE_PHYSICS[name])
    last = out.isel(time=-1)
    fields = [v.split("__", 1)[1] for v in reference.data_vars if v.startswith(name + "__")]
    assert {"u", "w", "th", "qv", "pipert"} <= set(fields)
    for field in fields:
        err, bound = _reference_error(name, field, last[field], reference[f"{name}__{field}"])
        assert err <= bound, (name, field, err)


def test_legacy_attributes_read_as_the_0_1_physics():
    with xr.open_dataset(LEGACY_STORE) as old:
        attrs = dict(old.attrs)
    physics = recorded_physics(attrs)
    # xlex 0.1 recorded the solver's resolved tolerance and cap
    assert physics == dataclasses.replace(
        REFERENCE_PHYSICS["bulk"],
        pressure=xlex.PressureSolver(tolerance=1e-10, max_iterations=100))


@pytest.mark.slow
def test_store_written_by_xlex_0_1_resumes(tmp_path, reference):
    path = tmp_path / "old.nc"
    shutil.copy(LEGACY_STORE, path)
    out = xlex.resume(path, duration="5min", progress=False)
    assert list(out["time"].values) == [0.0, 300.0, 600.0]
    last = out.isel(time=-1)
    for field in ("u", "w", "th", "qv", "km", "hfx"):
        err, bound = _reference_error("bulk", field, last[field], reference[f"bulk__{field}"])
        assert err <= bound, (field, err)


# ---- the pure step: parameters as arguments --------------------------------------------


@pytest.fixture(scope="module")
def small():
    grid = Grid(nx=12, ny=12, nz=12, dx=1000.0, dy=1000.0, dz=1000.0)
    base = moist_base_state(grid)
    state = warm_bubble_state(grid, base, 5.0)
    return grid, base, state


def _mean_w2(grid, base, state, physics, params, steps=5):
    step = make_step(grid, physics, 10.0)
    final, _ = advance(lambda s: step(s, base, params), state, steps)
    return jnp.mean(final.w ** 2)


def test_gradient_with_respect_to_cs_matches_finite_difference(small):
    grid, base, state = small
    physics = Physics(sgs=xlex.Smagorinsky(cs=0.2),
                      pressure=xlex.PressureSolver(tolerance=1e-13, max_iterations=200))
    params = parameters(physics)
    # one compiled program gives the gradient and both sides of the difference
    value_and_grad = jax.jit(jax.value_and_grad(
        lambda p: _mean_w2(grid, base, state, physics, p)))
    grad = value_and_grad(params)[1]
    assert isinstance(grad, Physics)
    g = float(grad.sgs.cs)
    h = 1e-4
    up = value_and_grad(dataclasses.replace(params, sgs=dataclasses.replace(params.sgs,
                                                                            cs=0.2 + h)))[0]
    down = value_and_grad(dataclasses.replace(params, sgs=dataclasses.replace(params.sgs,
                                                                              cs=0.2 - h)))[0]
    fd = float(up - down) / (2 * h)
    assert g < 0  # more eddy viscosity, weaker updraught
    assert abs(g - fd) <= 1e-6 * abs(fd), (g, fd)
    assert float(grad.sgs.prandtl) != 0.0  # every float parameter is a leaf


def test_step_vmaps_over_parameters_and_states(small):
    grid, base, state = small
    physics = Physics(sgs=xlex.Smagorinsky())
    step = make_step(grid, physics, 10.0)
    params = parameters(physics)
    cs = jnp.array([0.1, 0.3])
    batch = dataclasses.replace(params, sgs=dataclasses.replace(params.sgs, cs=cs))
    axes = jax.tree_util.tree_map_with_path(
        lambda path, _: 0 if path[-1].name == "cs" else None, batch)
    many, _ = jax.jit(jax.vmap(step, in_axes=(None, None, axes)))(state, base, batch)
    one, _ = step(state, base, dataclasses.replace(params, sgs=dataclasses.replace(
        params.sgs, cs=jnp.asarray(0.3))))
    np.testing.assert_allclose(many.w[1], one.w, rtol=1e-12, atol=1e-14)
    assert float(jnp.max(jnp.abs(many.w[0] - many.w[1]))) > 0
    states = jax.tree.map(lambda a: jnp.stack([a, a * 1.0]), state)
    two, info = jax.vmap(step, in_axes=(0, None, None))(states, base, params)
    np.testing.assert_array_equal(two.th[0], two.th[1])
    assert info["pressure_iterations"].shape == (2, 4)


def test_params_of_another_structure_are_refused(small):
    grid, base, state = small
    step = make_step(grid, Physics(sgs=xlex.Smagorinsky()), 10.0)
    with pytest.raises(OptionTypeError, match="structure"):
        step(state, base, parameters(Physics()))


def test_scheme_choices_are_static_parameters_are_leaves():
    physics = Physics(sgs=xlex.DynamicSmagorinsky(), rotation=xlex.FPlane(f=1e-4),
                      surface=xlex.BulkSurface(surface_temperature=300.0))
    leaves = jax.tree.leaves(physics)
    assert 1e-4 in leaves and 300.0 in leaves and 2.0 in leaves  # f, T_s, filter_ratio
    assert all(isinstance(x, float) for x in leaves)
    other = dataclasses.replace(physics, sgs=xlex.DynamicSmagorinsky(stability=False))
    assert jax.tree.structure(other) != jax.tree.structure(physics)
    same = dataclasses.replace(physics, rotation=xlex.FPlane(f=2e-4))
    assert jax.tree.structure(same) == jax.tree.structure(physics)


# ---- construction and shorthands ---------------------------------------------------------


@pytest.mark.parametrize("build, words", [
    (lambda: xlex.Smagorinsky(cs=-0.1), ["cs", "range"]),
    (lambda: xlex.Smagorinsky(cs="0.2"), ["cs", "number"]),
    (lambda: xlex.Smagorinsky(stability="no"), ["stability", "True or False"]),
    (lambda: xlex.Smagorinsky(prandtl=0.0), ["prandtl", "> 0"]),
    (lambda: xlex.DynamicSmagorinsky(filter_ratio=0.5), ["filter_ratio"]),
    (lambda: xlex.BulkSurface(), ["exactly one", "surface_temperature"]),
    (lambda: xlex.BulkSurface(surface_temperature=300.0, moisture_availability=2.0),
     ["moisture_availability", "<= 1"]),
    (lambda: xlex.FPlane(f=float("nan")), ["f", "finite"]),
    (lambda: xlex.FPlane(geostrophic_wind=3.0), ["geostrophic_wind", "pair"]),
    (lambda: xlex.Advection(vertical_order=4), ["vertical_order", "3 or 5"]),
    (lambda: xlex.Advection(momentum="centred"), ["momentum", "upwind5"]),
    (lambda: xlex.PressureSolver(method="gmres"), ["method", "pcg"]),
    (lambda: xlex.PressureSolver(tolerance=2.0), ["tolerance", "< 1"]),
    (lambda: Physics(sgs="smagorinsky"), ["sgs", "Smagorinsky"]),
    (lambda: xlex.Smagorinsky(0.2), ["positional"]),
])
def test_bad_schemes_fail_when_built(build, words):
    with pytest.raises((XlexError, TypeError)) as info:
        build()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_bad_scheme_fails_before_compiling(bubble, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("compiled")
    monkeypatch.setattr(runner, "make_step", never)
    with pytest.raises(OptionError, match="cs"):
        bubble.lex.integrate("1min", dt=10.0, output_every="1min", sgs="smagorinsky", cs=2.0)
    with pytest.raises(OptionError, match="choose"):
        bubble.lex.integrate("1min", dt=10.0, output_every="1min", sgs="smagorinksy")
    with pytest.raises(OptionError, match="cs"):
        bubble.lex.integrate("1min", dt=10.0, output_every="1min",
                             sgs=xlex.Smagorinsky(), cs=0.2)


def test_shorthands_resolve_to_the_objects():
    assert resolve_physics(shorthand={"cs": 0.2}, sgs="smagorinsky") == \
        Physics(sgs=xlex.Smagorinsky(cs=0.2))
    assert resolve_physics(sgs=None) == resolve_physics(sgs="none") == Physics()
    assert resolve_physics(shorthand={"coriolis": 1e-4, "geostrophic_u": 5.0}) == \
        Physics(rotation=xlex.FPlane(f=1e-4, geostrophic_wind=(5.0, 0.0)))
    assert resolve_physics(shorthand={"solver": "bicgstab", "tolerance": 1e-6}) == \
        Physics(pressure=xlex.PressureSolver(method="bicgstab", tolerance=1e-6))
    recorded = Physics(sgs=xlex.Smagorinsky(cs=0.1, prandtl=0.5))
    # an option without its slot changes that field of the recorded scheme only
    assert resolve_physics(recorded, shorthand={"cs": 0.3}).sgs == \
        xlex.Smagorinsky(cs=0.3, prandtl=0.5)
    # naming the slot replaces the recorded scheme
    assert resolve_physics(recorded, sgs="smagorinsky").sgs == xlex.Smagorinsky()
    with pytest.raises(OptionError, match="sgs='smagorinsky'"):
        resolve_physics(shorthand={"cs": 0.2})
    with pytest.raises(OptionTypeError, match="unknown"):
        resolve_physics(shorthand={"smagorinsky_constant": 0.2})


def test_object_and_shorthand_runs_are_identical(bubble):
    kw = dict(dt=10.0, output_every="1min", progress=False)
    a = bubble.lex.integrate("2min", sgs=xlex.Smagorinsky(cs=0.2), **kw)
    b = bubble.lex.integrate("2min", sgs="smagorinsky", cs=0.2, **kw)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a.attrs[PHYSICS_ATTR] == b.attrs[PHYSICS_ATTR]
    c = bubble.lex.integrate("2min", sgs=None, **kw)
    d = bubble.lex.integrate("2min", sgs="none", **kw)
    xr.testing.assert_identical(c.drop_attrs(), d.drop_attrs())
    assert "km" in a and "km" not in c


def test_physics_attribute_round_trips_exactly(bubble):
    physics = Physics(sgs=xlex.Smagorinsky(cs=0.1 + 0.2, prandtl=1 / 3),
                      rotation=xlex.FPlane(f=1.2345678901234e-4, geostrophic_wind=(3.0, -0.1)),
                      surface=xlex.BulkSurface(surface_temperature=301.7, roughness_length=0.03),
                      pressure=xlex.PressureSolver(method="bicgstab", max_iterations=321))
    out = bubble.lex.integrate("1min", dt=10.0, output_every="1min", progress=False,
                               physics=physics)
    doc = json.loads(out.attrs[PHYSICS_ATTR])
    assert doc["schema"] == 1 and doc["physics"]["sgs"]["scheme"] == "Smagorinsky"
    assert recorded_physics(out.attrs) == physics
    # a run continued from the output keeps its physics without naming it
    more = out.lex.integrate("1min", dt=10.0, output_every="1min", progress=False)
    assert recorded_physics(more.attrs) == physics


def test_a_bad_recorded_physics_names_the_attribute(bubble):
    ds = bubble.copy()
    ds.attrs[PHYSICS_ATTR] = json.dumps({"schema": 1, "physics": {
        "scheme": "Physics", "sgs": {"scheme": "Smagorinsky", "cs": -1.0}}})
    with pytest.raises(OptionError, match=PHYSICS_ATTR):
        ds.lex.integrate("1min", dt=10.0, output_every="1min")
    ds.attrs[PHYSICS_ATTR] = "{not json"
    with pytest.raises(OptionError, match=PHYSICS_ATTR):
        ds.lex.integrate("1min", dt=10.0, output_every="1min")


def test_second_integrate_compiles_nothing(bubble, caplog):
    physics = Physics(sgs=xlex.Smagorinsky(cs=0.15), rotation=xlex.FPlane(f=1.1e-4))
    kw = dict(dt=10.0, output_every="1min", progress=False, physics=physics)
    bubble.lex.integrate("1min", **kw)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        caplog.clear()
        bubble.lex.integrate("2min", **kw)
        # another value of a parameter is not another program
        bubble.lex.integrate("1min", **{**kw, "physics": dataclasses.replace(
            physics, sgs=xlex.Smagorinsky(cs=0.25))})
    compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()
                and ("chunk" in r.getMessage() or "diagnose" in r.getMessage())]
    assert compiled == []
    # the check itself sees a compilation when there is one
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        caplog.clear()
        bubble.lex.integrate("1min", **{**kw, "dt": 5.0})
    assert any("chunk" in r.getMessage() for r in caplog.records
               if "Compiling" in r.getMessage())


# ---- the correction seam ------------------------------------------------------------------

from xlex.core.dynamics.pressure import mass_divergence  # noqa: E402
from xlex.core.physics.scheme import PhysicsScheme, parameter, scheme  # noqa: E402


@scheme
class _WarmingCorrection(PhysicsScheme):
    """A correction after each step: th += amount [K] and w += amount [m s-1] at
    the middle level (a divergent change the projection must remove)."""

    amount: float = parameter(0.5)
    projects_correction = True

    def correct(self, state, base, grid):
        k = grid.nz // 2
        return dataclasses.replace(state, th=state.th + self.amount,
                                   w=state.w.at[..., k, :, :].add(self.amount))


def test_correct_runs_after_each_step_and_is_projected(small):
    grid, base, state = small
    solver = xlex.PressureSolver(tolerance=1e-12, max_iterations=200)
    plain = Physics(pressure=solver)
    corrected = Physics(pressure=solver, sgs=_WarmingCorrection(amount=0.5))
    a, _ = jax.jit(make_step(grid, plain, 10.0))(state, base, parameters(plain))
    step = make_step(grid, corrected, 10.0)

    def mean_th(p):
        stepped, _ = step(state, base, p)
        return jnp.mean(stepped.th), stepped

    # the corrected step and d mean(th) / d amount (checked below) from one program
    (_, b), g = jax.jit(jax.value_and_grad(mean_th, has_aux=True))(parameters(corrected))
    # the correction came after the step: the same step, then th + 0.5 K
    np.testing.assert_allclose(b.th, a.th + 0.5, rtol=0, atol=1e-10)
    # and the winds were projected again: a level-uniform w between rigid lids is
    # purely divergent, so the projection removes all 0.5 m/s of it
    div = mass_divergence(b.u, b.v, b.w, base.mass, base.mass_faces, grid)
    flux = float(jnp.max(jnp.abs(base.mass_faces[:, None, None] * b.w))) / grid.dz
    assert float(jnp.max(jnp.abs(div))) < 1e-9 * flux
    assert float(jnp.max(jnp.abs(b.w - a.w))) < 1e-8
    # its parameter is a leaf like any other: d mean(th) / d amount = 1
    assert float(g.sgs.amount) == pytest.approx(1.0, rel=1e-10)


# --------------------------------------------------------------------------- 0.1 attributes


@pytest.mark.parametrize("attrs, stability", [
    ({"xlex_sgs": "smagorinsky", "xlex_stability": "False"}, False),
    ({"xlex_sgs": "smagorinsky", "xlex_stability": "True"}, True),
    ({"xlex_sgs": "smagorinsky", "xlex_stability": np.int8(0)}, False),
    ({"xlex_sgs": "smagorinsky", "xlex_stability": np.array([1])}, True),
])
def test_recorded_booleans_of_xlex_0_1_are_read_as_written(attrs, stability):
    """A stored "False" is False (bool("False") is True, which turned the stability
    correction on in a run recorded without it)."""
    assert recorded_physics(attrs).sgs.stability is stability


@pytest.mark.parametrize("attrs, key, words", [
    ({"xlex_sgs": "smagorinsky", "xlex_cs": "five"}, "xlex_cs", "not a number"),
    ({"xlex_sgs": "smagorinsky", "xlex_cs": np.array([0.1, 0.2])}, "xlex_cs", "not a number"),
    ({"xlex_sgs": "smagorinsky", "xlex_stability": "yes"}, "xlex_stability", "True or False"),
    ({"xlex_max_iterations": 2.5}, "xlex_max_iterations", "not a whole number"),
    ({"xlex_sgs": 3}, "xlex_sgs", "not a string"),
])
def test_a_recorded_option_of_the_wrong_type_is_named(attrs, key, words):
    with pytest.raises(OptionError) as info:
        recorded_physics(attrs)
    assert key in str(info.value) and words in str(info.value), str(info.value)
