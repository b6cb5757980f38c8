"""The neural subgrid model as a scheme (xlex/ml/neural_sgs.py) and the hybrid step
(xlex/core/model.py, ``make_step`` and ``_project_correction``), on 8 x 8 x 4 cells
of 3 km (the warm bubble at dx = dz = 3000 m):

- a last layer of zeros (the default of ``create``) changes nothing, bit for bit,
  with and without the projection of the correction; random weights do change the
  run, and the projection keeps div(rho0 thrho0 u) at the solver's tolerance;
- save/load gives bit-identical corrections and the file holds the configuration,
  grid and statistics; float32 inference agrees with float64 to 1e-4;
- ``symmetric=True`` gives a mirror- and swap-symmetric state an exactly symmetric
  correction and corrected state (a plain network does not);
- a point where a field never varied in training gets no correction;
- jax.grad through 3 hybrid steps (pressure solves included) with respect to a
  weight of the head and of an inner layer matches a centred finite difference;
- runs record the model file and its checksum, resume with it bit for bit, and
  refuse a changed, missing or never-saved model;
- every bad input is a clear XlexError.

Runs share their compiled loops through a module fixture, and use a cheaper
advection (third-order vertical, no moisture limiter; the properties tested here
do not depend on it). The 'paper' preset is never run here.
"""

import dataclasses
import hashlib
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fakes import solve_info
from flax import serialization

import xlex
import xlex.runner
from xlex.core.dynamics.pressure import mass_divergence
from xlex.core.errors import GridMismatchError, OptionError, OptionTypeError, XlexError
from xlex.core.grid import Grid
from xlex.core.initial import moist_base_state, warm_bubble_state
from xlex.core.model import Physics, make_step, parameters
from xlex.core.state import BaseState, State
from xlex.core.stepping import advance
from xlex.io.convert import dataset_to_inputs
from xlex.ml import (
    ModelFileError,
    NetworkConfig,
    NeuralSGS,
    Normalisation,
    normalisation_from_states,
)
from xlex.options import PHYSICS_ATTR

#: The grid of xlex.cases.warm_bubble(dx=3000.0): 24 x 24 x 12 km in 8 x 8 x 4 cells.
GRID = Grid(nx=8, ny=8, nz=4, dx=3000.0, dy=3000.0, dz=3000.0)
#: A bubble wide enough to be resolved by 3 km cells.
RADII = dict(x_radius=5000.0, y_radius=5000.0, z_radius=5000.0)
DT = 20.0
#: The advection of every run here (cheaper to compile than the default).
CHEAP = xlex.Advection(vertical_order=3, positive_moisture=False)
FIELDS = ("u", "v", "w", "th", "qv", "pi")


# --------------------------------------------------------------------------- fixtures


def as_float64(weights):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), weights)


def with_random_head(model, seed=0, scale=0.02):
    """``model`` with random weights in its last layer (zero in a new model)."""
    rng = np.random.default_rng(seed)
    weights = jax.tree.map(lambda a: a, model.weights)  # a new nest of dicts
    kernel = weights["head"]["kernel"]
    weights["head"] = {"kernel": scale * rng.normal(size=kernel.shape),
                       "bias": scale * rng.normal(size=weights["head"]["bias"].shape)}
    return dataclasses.replace(model, weights=as_float64(weights))


def random_states(rng, batch, base):
    """``batch`` random states around ``base`` (numpy)."""
    shape = (batch, *GRID.shape)
    w = rng.normal(size=(batch, *GRID.w_shape))
    w[:, 0] = w[:, -1] = 0.0
    return State(u=rng.normal(size=shape), v=rng.normal(size=shape), w=w,
                 th=np.asarray(base.th0)[:, None, None] + 0.5 * rng.normal(size=shape),
                 qv=np.asarray(base.qv0)[:, None, None] * rng.uniform(0.8, 1.2, size=shape),
                 pi=1e-4 * rng.normal(size=shape))


@pytest.fixture(scope="module")
def setup():
    """(base state, a perturbed warm bubble, training statistics of random states)."""
    base = moist_base_state(GRID)
    bubble = warm_bubble_state(GRID, base, 5.0, **RADII)
    rng = np.random.default_rng(0)
    state = dataclasses.replace(bubble, th=bubble.th + 0.1 * rng.normal(size=GRID.shape))
    stats = normalisation_from_states(random_states(rng, 4, base), jax.tree.map(np.asarray, base))
    return base, state, stats


@pytest.fixture(scope="module")
def zero_model(setup):
    """NeuralSGS.create's model (last layer zero), its float32 weights held as float64
    (the same numbers, so float32 inference is unchanged; in float64 a finite
    difference of a weight is then not rounded to float32)."""
    _, _, stats = setup
    model = NeuralSGS.create(GRID, stats)
    return dataclasses.replace(model, weights=as_float64(model.weights))


@pytest.fixture(scope="module")
def random_model(zero_model):
    return with_random_head(zero_model)


@jax.jit
def correction_of(model, state, base):
    """``model.correction(state, base)``, compiled once per kind of model (jit is
    quicker here than running the network op by op)."""
    return model.correction(state, base)


@jax.jit
def correct(model, state, base):
    return model.correct(state, base, GRID)


# --------------------------------------------------------------------------- the hybrid step


def test_created_model_is_the_default_network_and_corrects_nothing(setup, zero_model):
    base, state, _ = setup
    assert zero_model.parameter_count == 74_005
    assert zero_model.config == NetworkConfig()
    assert (zero_model.symmetric, zero_model.project, zero_model.precision) == \
        (False, True, "float32")
    correction = np.asarray(correction_of(zero_model, state, base))
    assert correction.shape == (*GRID.shape, 5)
    np.testing.assert_array_equal(correction, 0.0)


def test_jax_grad_through_three_hybrid_steps_matches_finite_differences(setup, random_model):
    """d(loss)/d(weight) for one weight of the head and one of the first convolution,
    through the network, the correction's projection and the dynamics' pressure
    solves (implicit derivatives), in float64 with a tight solver tolerance."""
    base, state, _ = setup
    model = dataclasses.replace(random_model, precision="float64")
    physics = Physics(advection=CHEAP, sgs=model,
                      pressure=xlex.PressureSolver(tolerance=1e-13, max_iterations=200))
    step = make_step(GRID, physics, DT)
    rng = np.random.default_rng(3)
    r_th, r_u = rng.normal(size=GRID.shape), rng.normal(size=GRID.shape)

    def loss(params):
        final, _ = advance(lambda s: step(s, base, params), state, 3)
        return (jnp.sum(r_th * (final.th - state.th)) + jnp.sum(r_u * final.u)
                + jnp.sum(final.w ** 2))

    params = parameters(physics)
    value_and_grad = jax.jit(jax.value_and_grad(loss))  # for the differences too: one compile
    _, grad = value_and_grad(params)
    assert isinstance(grad, Physics)

    def bumped(path, index, delta):
        weights = jax.tree.map(lambda a: a, params.sgs.weights)
        leaf = weights
        for key in path[:-1]:
            leaf = leaf[key]
        leaf[path[-1]] = jnp.asarray(leaf[path[-1]]).at[index].add(delta)
        return dataclasses.replace(params, sgs=dataclasses.replace(params.sgs, weights=weights))

    for path, index in ((("head", "kernel"), (1, 1, 2, 3, 2)),
                        (("encoder", 0, 0, "kernel"), (1, 1, 1, 0, 3))):
        g = grad.sgs.weights
        for key in path:
            g = g[key]
        g = float(g[index])
        h = 1e-3
        fd = (float(value_and_grad(bumped(path, index, h))[0])
              - float(value_and_grad(bumped(path, index, -h))[0])) / (2 * h)
        assert g != 0.0, path
        assert abs(g - fd) <= 1e-5 * abs(fd), (path, g, fd, abs(g - fd) / abs(fd))


# --------------------------------------------------------------------------- inference


def test_float32_inference_matches_float64(setup, random_model):
    base, state, _ = setup
    c32 = np.asarray(correction_of(random_model, state, base))
    c64 = np.asarray(correction_of(dataclasses.replace(random_model, precision="float64"),
                                   state, base))
    assert c32.dtype == c64.dtype == np.float64  # returned in the state's dtype
    for i, name in enumerate(("thrho", "qv", "u", "v", "w")):
        scale = float(np.max(np.abs(c64[..., i])))
        err = float(np.max(np.abs(c32[..., i] - c64[..., i])))
        assert scale > 0, name
        assert err <= 1e-4 * scale, (name, err / scale)
    # and float32 is really what ran (it is not float64 under another name)
    assert not np.array_equal(c32, c64)


def test_a_field_that_never_varied_gets_no_correction_there(setup, random_model):
    base, state, stats = setup
    out_range = np.array(stats.output_range)
    out_range[0, 1, 2, 3] = 0.0     # thrho at one point
    out_range[2, 0] = 0.0           # u on the whole lowest level
    out_range[4, 3, 5, 0] = 0.0     # w at one point
    model = dataclasses.replace(random_model, precision="float64",
                                normalisation=dataclasses.replace(stats, output_range=out_range))
    c = np.asarray(correction_of(model, state, base))
    assert c[1, 2, 3, 0] == 0.0 and c[3, 5, 0, 4] == 0.0
    np.testing.assert_array_equal(c[0, :, :, 2], 0.0)
    # everywhere else the correction is not zero (the zeros come from the ranges)
    assert np.count_nonzero(c == 0.0) == 1 + 1 + GRID.nx * GRID.ny
    assert c[1, 2, 3, 1] != 0.0 and c[1, 2, 3, 2] != 0.0


# --------------------------------------------------------------------------- symmetry


def mirror_x(s):
    """The state mirrored about x = Lx / 2: a west face i goes to face (nx - i) % nx
    and u changes sign; centred fields flip."""
    idx = (GRID.nx - np.arange(GRID.nx)) % GRID.nx
    return State(u=-s.u[..., idx], v=s.v[..., ::-1], w=s.w[..., ::-1], th=s.th[..., ::-1],
                 qv=s.qv[..., ::-1], pi=s.pi[..., ::-1])


def mirror_y(s):
    idx = (GRID.ny - np.arange(GRID.ny)) % GRID.ny
    return State(u=s.u[..., ::-1, :], v=-s.v[..., idx, :], w=s.w[..., ::-1, :],
                 th=s.th[..., ::-1, :], qv=s.qv[..., ::-1, :], pi=s.pi[..., ::-1, :])


def swap(s):
    """x <-> y: u on west faces becomes v on south faces and the other way round."""
    t = lambda a: np.swapaxes(a, -1, -2)  # noqa: E731
    return State(u=t(s.v), v=t(s.u), w=t(s.w), th=t(s.th), qv=t(s.qv), pi=t(s.pi))


def group_of_state_maps():
    """The eight maps of the mirror/swap group, as compositions."""
    maps = []
    for sw in (False, True):
        for my in (False, True):
            for mx in (False, True):
                def g(s, mx=mx, my=my, sw=sw):
                    s = mirror_x(s) if mx else s
                    s = mirror_y(s) if my else s
                    return swap(s) if sw else s
                maps.append(((mx, my, sw), g))
    return maps


def centred_map(c, mx, my, sw):
    """The same map on centred corrections (..., z, y, x, [thrho, qv, u, v, w])."""
    c = np.array(c)
    if mx:
        c = c[..., ::-1, :]
        c[..., 2] *= -1.0
    if my:
        c = c[..., ::-1, :, :]
        c[..., 3] *= -1.0
    if sw:
        c = np.swapaxes(c, -3, -2)[..., [0, 1, 3, 2, 4]]
    return c


def as_numpy(s):
    return State(**{n: np.asarray(getattr(s, n)) for n in FIELDS})


def symmetrised(s):
    """The average of ``s`` over the group: (1 + swap)/2 (1 + My)/2 (1 + Mx)/2."""
    for g in (mirror_x, mirror_y, swap):
        s = jax.tree.map(lambda a, b: 0.5 * (a + b), s, g(s))
    return s


@pytest.fixture(scope="module")
def symmetric_state(setup):
    base, _, _ = setup
    s = symmetrised(as_numpy(jax.tree.map(lambda a: a[0], random_states(
        np.random.default_rng(5), 1, base))))
    for _, g in group_of_state_maps():  # exactly symmetric (flips and swaps are exact)
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(g(s), name), getattr(s, name))
    assert np.std(s.u) > 0.1 and np.std(s.th) > 0.1
    return s


def asymmetry(c):
    """Largest change of a centred correction under the group, relative to its size."""
    scale = np.max(np.abs(c), axis=(0, 1, 2))
    return max(float(np.max(np.abs(centred_map(c, *g) - c) / scale)) for g, _ in
               group_of_state_maps())


def test_symmetric_model_corrects_a_symmetric_state_symmetrically(setup, random_model,
                                                                  symmetric_state):
    base, _, _ = setup
    state = State(**{n: jnp.asarray(getattr(symmetric_state, n)) for n in FIELDS})
    model = dataclasses.replace(random_model, symmetric=True, precision="float64")
    c = np.asarray(correction_of(model, state, base))
    assert np.all(np.max(np.abs(c), axis=(0, 1, 2)) > 0)
    assert asymmetry(c) <= 1e-12, asymmetry(c)
    # a plain network does not respect the symmetry
    plain = np.asarray(correction_of(dataclasses.replace(model, symmetric=False), state, base))
    assert asymmetry(plain) > 1e-4, asymmetry(plain)
    # the corrected state (faces, w = 0 on the walls, th from thrho) is symmetric too
    corrected = as_numpy(correct(model, state, base))
    for g_id, g in group_of_state_maps():
        image = g(corrected)
        for name in FIELDS:
            a, b = getattr(image, name), getattr(corrected, name)
            scale = float(np.max(np.abs(b)))
            assert float(np.max(np.abs(a - b))) <= 1e-12 * scale, (name, g_id)
    for name in ("u", "v", "w", "th", "qv"):
        assert not np.array_equal(getattr(corrected, name), getattr(symmetric_state, name)), name
    np.testing.assert_array_equal(corrected.w[[0, -1]], 0.0)


def test_symmetric_model_is_equivariant_for_any_state(setup, random_model):
    """C(g x) = g C(x) for every state x and group element g (so a symmetric state
    gets a symmetric correction without being symmetrised first)."""
    base, state, _ = setup
    model = dataclasses.replace(random_model, symmetric=True, precision="float64")
    x = as_numpy(state)
    c = np.asarray(correction_of(model, state, base))
    for g_id, g in group_of_state_maps()[1::3]:  # three of the seven other elements
        image = State(**{n: jnp.asarray(getattr(g(x), n)) for n in FIELDS})
        cg = np.asarray(correction_of(model, image, base))
        np.testing.assert_allclose(cg, centred_map(c, *g_id), rtol=0,
                                   atol=1e-12 * float(np.max(np.abs(c))), err_msg=str(g_id))


# --------------------------------------------------------------------------- files


def test_save_and_load_give_bit_identical_corrections(setup, random_model, tmp_path):
    base, state, stats = setup
    path = tmp_path / "model.msgpack"
    saved = random_model.save(path)
    assert saved.source == str(path.resolve()) and random_model.source is None
    assert [p.name for p in tmp_path.iterdir()] == ["model.msgpack"]  # no part file left
    loaded = NeuralSGS.load(path)
    assert loaded.source == str(path.resolve())
    assert loaded.config == random_model.config and loaded.grid == GRID
    assert jax.tree.structure(loaded.weights) == jax.tree.structure(random_model.weights)
    for a, b in zip(jax.tree.leaves(loaded.weights), jax.tree.leaves(random_model.weights),
                    strict=True):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)
    for precision in ("float32", "float64"):
        a = correction_of(dataclasses.replace(saved, precision=precision), state, base)
        b = correction_of(dataclasses.replace(loaded, precision=precision), state, base)
        assert np.array_equal(np.asarray(a), np.asarray(b)), precision
        assert np.any(np.asarray(a) != 0)
    # the options are not in the file: load takes them as keywords
    other = NeuralSGS.load(path, symmetric=True, project=False, precision="float64")
    assert (other.symmetric, other.project, other.precision) == (True, False, "float64")
    # the file: format, version, configuration, grid, statistics
    content = serialization.msgpack_restore(path.read_bytes())
    assert content["format"] == "xlex-neural-sgs" and content["format_version"] == 1
    assert content["xlex_version"] == xlex.__version__
    assert content["config"] == {"widths": [16, 32], "convs_per_level": 2,
                                 "activation": "gelu", "ghost": 1}
    assert content["grid"] == {"nx": 8, "ny": 8, "nz": 4, "dx": 3000.0, "dy": 3000.0,
                               "dz": 3000.0}
    for name in ("input_min", "input_max", "output_range"):
        np.testing.assert_array_equal(content["normalisation"][name], getattr(stats, name))
        np.testing.assert_array_equal(getattr(loaded.normalisation, name), getattr(stats, name))


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="no neural model file") as info:
        NeuralSGS.load(tmp_path / "nowhere.msgpack")
    assert "nowhere.msgpack" in str(info.value)


@pytest.mark.parametrize("content", [
    b"this is not a model\n",
    serialization.msgpack_serialize({"weights": np.zeros(3)}),
    serialization.msgpack_serialize([1, 2, 3]),
])
def test_a_file_that_is_not_a_model_is_refused(tmp_path, content):
    path = tmp_path / "other.bin"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="not a neural model file") as info:
        NeuralSGS.load(path)
    assert "other.bin" in str(info.value)


@pytest.fixture(scope="module")
def saved_content(random_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.msgpack"
    random_model.save(path)
    return path.read_bytes()


def test_a_truncated_model_file_is_refused(tmp_path, saved_content):
    path = tmp_path / "cut.msgpack"
    path.write_bytes(saved_content[: len(saved_content) // 2])
    with pytest.raises(ModelFileError, match="cut.msgpack"):
        NeuralSGS.load(path)


def test_a_file_of_another_format_version_is_refused(tmp_path, saved_content):
    content = serialization.msgpack_restore(saved_content)
    content["format_version"] = 2
    content["xlex_version"] = "9.9.9"
    path = tmp_path / "future.msgpack"
    path.write_bytes(serialization.msgpack_serialize(content))
    with pytest.raises(ModelFileError) as info:
        NeuralSGS.load(path)
    message = str(info.value)
    assert "future.msgpack" in message and "version 2" in message and "9.9.9" in message
    assert "reads version 1" in message


def test_weights_that_do_not_fit_the_configuration_are_refused(tmp_path, saved_content):
    content = serialization.msgpack_restore(saved_content)
    content["config"]["widths"] = [16, 24]
    path = tmp_path / "mixed.msgpack"
    path.write_bytes(serialization.msgpack_serialize(content))
    with pytest.raises(ModelFileError, match="match its network configuration"):
        NeuralSGS.load(path)


# --------------------------------------------------------------------------- runs, records, resume


#: The runs of ds.lex.integrate: 2-minute outputs of 3 steps, with the cheaper advection.
RUN = dict(dt=20.0, output_every="1min", precision="float64", progress=False, advection=CHEAP)
STORED = ("u", "v", "w", "th", "qv", "pipert")


@pytest.fixture(scope="module")
def bubble():
    return xlex.cases.warm_bubble(theta_c=5.0, dx=3000.0, **RADII)


@pytest.fixture(scope="module")
def runs(bubble, zero_model, random_model, tmp_path_factory):
    """Runs of the warm bubble without a neural model, with the zero model and with the
    random-head model (each with and without the projection), all saved at one path
    (the path is part of the scheme, so a model saved there reuses the compiled loop of
    another), a 4-minute reference and its first 2 minutes streamed to a store."""
    folder = tmp_path_factory.mktemp("runs")
    path = folder / "model.msgpack"
    out = {"model_path": path, "plain": bubble.lex.integrate("2min", **RUN)}
    zero = zero_model.save(path)
    out["zero"] = bubble.lex.integrate("2min", sgs=zero, **RUN)
    out["zero_free"] = bubble.lex.integrate(
        "2min", sgs=dataclasses.replace(zero, project=False), **RUN)
    model = random_model.save(path)
    out["digest"] = hashlib.sha256(path.read_bytes()).hexdigest()
    out["reference"] = bubble.lex.integrate("4min", sgs=model, **RUN)
    out["free"] = bubble.lex.integrate("2min", sgs=dataclasses.replace(model, project=False),
                                       **RUN)
    out["store"] = folder / "run.nc"
    bubble.lex.integrate("2min", sgs=model, store=out["store"], **RUN)
    return out


def assert_records_equal(a, b):
    """Bit-for-bit equality of the records two runs share."""
    n = min(a.sizes["time"], b.sizes["time"])
    a, b = a.isel(time=slice(0, n)), b.isel(time=slice(0, n))
    np.testing.assert_array_equal(a["time"].values, b["time"].values)
    for name in STORED:
        x, y = a[name].values, b[name].values
        assert np.array_equal(x, y), (name, float(np.max(np.abs(x - y))))


@pytest.mark.parametrize("run", ["zero", "zero_free"])
def test_a_zero_last_layer_leaves_the_dynamics_bit_for_bit(runs, run):
    """The model of create (project=True) and the same without the projection."""
    assert runs[run].sizes["time"] == 3
    assert_records_equal(runs[run], runs["plain"])
    assert float(np.max(np.abs(runs["plain"]["w"].values[-1]))) > 0.1  # the bubble rose


def divergences(run):
    """max |div(rho0 thrho0 u)| of each record after the first, relative to the largest
    term of it (max |rho0 thrho0 u| / dx)."""
    out = []
    for k in range(1, run.sizes["time"]):
        inputs = dataset_to_inputs(run.isel(time=k))
        base = BaseState(**{n: jnp.asarray(v) for n, v in inputs.base.items()})
        u, v, w = (jnp.asarray(inputs.state[n]) for n in ("u", "v", "w"))
        div = mass_divergence(u, v, w, base.mass, base.mass_faces, GRID)
        flux = float(jnp.max(jnp.abs(base.mass[:, None, None] * u))) / GRID.dx
        out.append(float(jnp.max(jnp.abs(div))) / flux)
    return np.array(out)


def test_random_weights_change_the_run_and_the_projection_keeps_the_constraint(runs):
    reference, plain = runs["reference"].isel(time=slice(0, 3)), runs["plain"]
    for name in ("u", "v", "w", "th", "qv"):
        assert not np.array_equal(reference[name].values[1:], plain[name].values[1:]), name
    # the default float64 tolerance of the pressure solve is 1e-10 (relative residual)
    assert np.all(divergences(plain) < 1e-8)
    assert np.all(divergences(reference) < 1e-8), divergences(reference)
    assert np.all(divergences(runs["free"]) > 1e-3), divergences(runs["free"])
    assert not np.array_equal(runs["free"]["u"].values[1:], reference["u"].values[1:])


def test_a_run_records_the_model_file_and_its_checksum(runs):
    record = json.loads(runs["reference"].attrs[PHYSICS_ATTR])["physics"]["sgs"]
    assert record == {"scheme": "NeuralSGS", "path": str(runs["model_path"].resolve()),
                      "sha256": runs["digest"], "symmetric": False, "project": True,
                      "precision": "float32"}
    free = json.loads(runs["free"].attrs[PHYSICS_ATTR])["physics"]["sgs"]
    assert free["project"] is False and free["sha256"] == runs["digest"]


def test_resume_continues_bit_for_bit_with_the_same_model(runs, tmp_path):
    store = tmp_path / "run.nc"
    shutil.copyfile(runs["store"], store)
    resumed = xlex.resume(store, "2min", progress=False)
    assert resumed.sizes["time"] == runs["reference"].sizes["time"] == 5
    assert_records_equal(resumed, runs["reference"])


def fake_make_step(grid, physics, dt):
    """A step that only warms th (cheap to compile): the store's records are not the
    point where this is used."""
    def step(s, base, params):
        return dataclasses.replace(s, th=s.th + 0.01), solve_info(s.th.dtype)
    return step


def test_resume_refuses_a_changed_or_missing_model_file(bubble, random_model, zero_model,
                                                        tmp_path, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step)
    model_path = tmp_path / "model.msgpack"
    store = tmp_path / "run.nc"
    bubble.lex.integrate("1min", sgs=random_model.save(model_path), store=store, **RUN)
    before = store.read_bytes()
    with_random_head(zero_model, seed=1).save(model_path)  # another model, same file name
    with pytest.raises(ModelFileError) as info:
        xlex.resume(store, "1min", progress=False)
    assert str(model_path.resolve()) in str(info.value) and "changed" in str(info.value)
    model_path.unlink()
    with pytest.raises(ModelFileError) as info:
        xlex.resume(store, "1min", progress=False)
    assert str(model_path.resolve()) in str(info.value)
    assert store.read_bytes() == before  # nothing was appended


def test_resume_refuses_a_model_that_was_never_saved(bubble, random_model, tmp_path,
                                                     monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step)
    store = tmp_path / "run.nc"
    assert random_model.source is None
    out = bubble.lex.integrate("1min", sgs=random_model, store=store, **RUN)
    assert json.loads(out.attrs[PHYSICS_ATTR])["physics"]["sgs"]["path"] is None
    with pytest.raises(ModelFileError, match="never saved"):
        xlex.resume(store, "1min", progress=False)


# --------------------------------------------------------------------------- bad input


def never(*args, **kwargs):
    raise AssertionError("compiled")


def test_a_model_for_another_grid_is_refused_before_compiling(random_model, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", never)
    other = xlex.cases.warm_bubble(theta_c=5.0, dx=4000.0, dz=3000.0)  # 6 x 6 x 4 cells
    with pytest.raises(GridMismatchError) as info:
        other.lex.integrate("1min", sgs=random_model, **RUN)
    message = str(info.value)
    assert "8 x 8 x 4 cells of 3000 x 3000 x 3000 m" in message, message
    assert "6 x 6 x 4 cells of 4000 x 4000 x 3000 m" in message, message
    # the pure step refuses it too, when it is built
    grid = Grid(nx=6, ny=6, nz=4, dx=4000.0, dy=4000.0, dz=3000.0)
    with pytest.raises(GridMismatchError):
        make_step(grid, Physics(sgs=random_model), DT)


def test_statistics_of_another_grid_are_refused(setup):
    _, _, stats = setup
    other = Normalisation(input_min=np.zeros((6, 6)), input_max=np.ones((6, 6)),
                          output_range=np.ones((5, 6, 8, 8)))
    with pytest.raises(GridMismatchError) as info:
        NeuralSGS.create(GRID, other)
    assert "(6, 8, 8)" in str(info.value) and "(4, 8, 8)" in str(info.value)


@pytest.mark.parametrize("field, shape", [
    ("input_min", (6, 3)),        # one level short
    ("input_max", (5, 4)),        # one input short
    ("output_range", (4, 4, 8, 8)),  # one corrected field short
])
def test_statistics_of_the_wrong_shape_are_refused_when_built(setup, field, shape):
    _, _, stats = setup
    bad = dataclasses.replace(stats, **{field: np.ones(shape)})
    try:
        NeuralSGS.create(GRID, bad)
    except XlexError as err:
        assert field in str(err) or str(shape) in str(err), str(err)
        return
    pytest.fail(f"NeuralSGS accepted normalisation statistics with {field} of shape {shape} "
                "(expected (6, nz) inputs and (5, nz, ny, nx) ranges); they fail only when "
                "the network runs")


@pytest.mark.parametrize("build, kind, words", [
    (lambda s: NeuralSGS.create(GRID, s, symmetric="yes"), OptionTypeError,
     ["symmetric", "True or False"]),
    (lambda s: NeuralSGS.create(GRID, s, symmetric=1), OptionTypeError, ["symmetric"]),
    (lambda s: NeuralSGS.create(GRID, s, project="False"), OptionTypeError, ["project"]),
    (lambda s: NeuralSGS.create(GRID, s, precision="float16"), OptionError,
     ["precision", "float16", "float32"]),
    (lambda s: NeuralSGS.create(GRID, s, preset="huge"), OptionError,
     ["preset", "huge", "paper"]),
    (lambda s: NeuralSGS.create(GRID, s, config=NetworkConfig(activation="swish")),
     OptionError, ["activation", "swish"]),
    (lambda s: NeuralSGS.create(GRID, s, config={"widths": (8,)}), OptionTypeError,
     ["config", "NetworkConfig"]),
    (lambda s: NeuralSGS.create(GRID), OptionTypeError, ["normalisation"]),
])
def test_bad_options_are_refused_when_built(setup, build, kind, words):
    _, _, stats = setup
    with pytest.raises(kind) as info:
        build(stats)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_an_ensemble_with_the_model_runs_each_member_as_alone(bubble, runs):
    """A NeuralSGS in an ensemble (members vmapped): each member's records are those
    of the member run by itself with the same model."""
    import xarray as xr
    # float64 arithmetic: a float32 network rounds differently when batched (1e-8)
    model = xlex.ml.NeuralSGS.load(runs["model_path"], precision="float64")
    weaker = xlex.cases.warm_bubble(theta_c=2.0, dx=3000.0, **RADII)
    fields = ["u", "v", "w", "th", "qv", "pipert", "thpert", "qvpert", "thrho"]
    ens = xr.concat([weaker, bubble], dim="member", data_vars=fields, coords="minimal",
                    compat="override", join="exact")
    out = ens.lex.integrate("2min", sgs=model, **RUN)
    alone = bubble.lex.integrate("2min", sgs=model, **RUN)
    for name in STORED:  # the 5 K member, to round-off under vmap
        np.testing.assert_allclose(out[name].isel(member=1).values, alone[name].values,
                                   rtol=0, atol=1e-12 * max(1.0, float(np.abs(
                                       alone[name]).max())))
    assert float(np.abs(alone["th"] - runs["reference"]["th"].isel(time=slice(0, 3))).max()) > 0
    assert float(np.abs(out["w"].isel(member=0) - out["w"].isel(member=1)).max()) > 0.1
