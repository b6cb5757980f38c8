"""The network of the neural subgrid model (xlex/ml/network.py) and its
normalisation (xlex/ml/normalisation.py), checked without running the model:

- parameter counts of the default and 'paper' configurations, from
  ``nnx.eval_shape`` (the paper preset is never run) and from the layer list a
  config implies (27 cin cout + cout per 3x3x3 convolution);
- halving and doubling, ghost points (periodic in x and y, mirrored walls with w
  odd) against values written out by index;
- the network's inputs and the normalisation statistics against a direct numpy
  computation from their definitions (eqs. 20-21), from states and from Datasets
  (with a time dim, ensemble members, and the training sets of make_training_data);
- refused configurations and grids, each with a message naming the problem.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import xlex
from xlex.core import constants
from xlex.core.errors import OptionError, OptionTypeError, XlexError
from xlex.core.grid import Grid
from xlex.core.initial import moist_base_state
from xlex.core.state import State
from xlex.io.convert import coordinates, states_to_dataset
from xlex.ml import NetworkConfig, Normalisation, normalisation_from_data, normalisation_from_states
from xlex.ml.data import make_training_data
from xlex.ml.network import (
    INPUTS,
    OUTPUTS,
    PRESETS,
    _double,
    _halve,
    build_autoencoder,
    count_parameters,
    network_inputs,
    pad_ghost,
    strip_ghost,
)

# --------------------------------------------------------------------------- helpers


def layer_list(config):
    """(cin, cout) of every 3x3x3 convolution a config implies, in call order:
    each encoder level (the first from the previous width, the six inputs at the
    top), each decoder level back up, and the head to the five outputs."""
    layers, width = [], 6
    for w in config.widths:
        layers += [(width, w)] + [(w, w)] * (config.convs_per_level - 1)
        width = w
    for w in reversed(config.widths[:-1]):
        layers += [(width, w)] + [(w, w)] * (config.convs_per_level - 1)
        width = w
    return layers + [(width, 5)]


def eval_shape_kernels(config):
    """The shapes of the network's weights, built abstractly (no array is made)."""
    abstract = nnx.eval_shape(lambda: build_autoencoder(config))
    return jax.tree.leaves(nnx.state(abstract))


def random_states(rng, batch, grid, base):
    """``batch`` random states of ``grid`` around ``base`` (numpy arrays)."""
    shape = (batch, *grid.shape)
    th0 = np.asarray(base.th0)[:, None, None]
    qv0 = np.asarray(base.qv0)[:, None, None]
    w = rng.normal(size=(batch, *grid.w_shape))
    w[:, 0] = w[:, -1] = 0.0
    return State(u=3.0 * rng.normal(size=shape), v=rng.normal(size=shape) - 1.0, w=w,
                 th=th0 + rng.normal(size=shape), qv=qv0 * rng.uniform(0.5, 1.5, size=shape),
                 pi=1e-3 * rng.normal(size=shape))


def inputs_by_hand(u, v, w, th, qv, pi, th0, qv0):
    """The six inputs from their definitions: thrho' = thrho - thrho0 with
    thrho = th (1 + VIRTUAL qv); pi'; qv' = qv - qv0; u, v, w averaged from the
    faces (u on the west face, v on the south face, both periodic; w on the
    bottom face, nz + 1 levels) to the centres. ``th0``, ``qv0`` broadcast
    against ``th``."""
    vir = constants.VIRTUAL
    return np.stack([th * (1 + vir * qv) - th0 * (1 + vir * qv0), pi, qv - qv0,
                     0.5 * (u + np.roll(u, -1, axis=-1)),
                     0.5 * (v + np.roll(v, -1, axis=-2)),
                     0.5 * (w[..., :-1, :, :] + w[..., 1:, :, :])])


def statistics_by_hand(x, corrected):
    """(input_min, input_max, output_range) of inputs ``x`` (6, B, nz, ny, nx) and
    corrected fields (5, B, nz, ny, nx): extremes of each input over the batch, y
    and x at each level; max - min of each corrected field over the batch at
    each point."""
    return (x.min(axis=(1, 3, 4)), x.max(axis=(1, 3, 4)),
            corrected.max(axis=1) - corrected.min(axis=1))


def corrected_by_hand(u, v, w, th, qv):
    """thrho, qv and the centred winds (the corrected fields)."""
    return np.stack([th * (1 + constants.VIRTUAL * qv), qv,
                     0.5 * (u + np.roll(u, -1, axis=-1)),
                     0.5 * (v + np.roll(v, -1, axis=-2)),
                     0.5 * (w[..., :-1, :, :] + w[..., 1:, :, :])])


@pytest.fixture(scope="module")
def small():
    """A non-square grid (nx != ny, so an x/y mix-up shows), its base state, and
    four random states."""
    grid = Grid(nx=6, ny=8, nz=4, dx=500.0, dy=400.0, dz=300.0)
    base = jax.tree.map(np.asarray, moist_base_state(grid))
    return grid, base, random_states(np.random.default_rng(1), 4, grid, base)


# --------------------------------------------------------------------------- sizes


def test_default_and_paper_parameter_counts():
    for name, expected in (("default", 74_005), ("paper", 7_172_309)):
        config = PRESETS[name]
        leaves = eval_shape_kernels(config)
        counted = sum(math.prod(leaf.shape) for leaf in leaves)
        by_formula = sum(27 * cin * cout + cout for cin, cout in layer_list(config))
        assert counted == by_formula == expected, (name, counted, by_formula)
        assert count_parameters(nnx.state(nnx.eval_shape(
            lambda c=config: build_autoencoder(c)))) == expected
        # and the layers are the ones the formula assumed, 3x3x3 kernels with biases
        kernels = sorted(leaf.shape for leaf in leaves if len(leaf.shape) == 5)
        assert kernels == sorted((3, 3, 3, cin, cout) for cin, cout in layer_list(config))


# --------------------------------------------------------------------------- resampling


def test_halve_averages_2x2x2_blocks_and_double_repeats():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 4, 6, 8, 3))
    blocks = x.reshape(2, 2, 2, 3, 2, 4, 2, 3)  # (b, kz, 2, jy, 2, ix, 2, c)
    np.testing.assert_allclose(np.asarray(_halve(jnp.asarray(x))), blocks.mean(axis=(2, 4, 6)),
                               rtol=1e-15, atol=1e-15)
    y = rng.normal(size=(2, 2, 3, 4, 3))
    doubled = np.asarray(_double(jnp.asarray(y)))
    assert doubled.shape == (2, 4, 6, 8, 3)
    for a in range(2):
        for b in range(2):
            for c in range(2):
                np.testing.assert_array_equal(doubled[:, a::2, b::2, c::2, :], y)


def test_halve_then_double_is_the_identity_on_block_constant_fields():
    rng = np.random.default_rng(3)
    # dyadic values, so that the mean of eight equal numbers is exact whatever its order
    coarse = np.round(rng.normal(size=(3, 2, 4, 3, 6)) * 2 ** 20) / 2 ** 20
    fine = np.repeat(np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2), 2, axis=3)
    assert fine.shape == (3, 4, 8, 6, 6)
    np.testing.assert_array_equal(np.asarray(_double(_halve(jnp.asarray(fine)))), fine)
    # and a field that is not block-constant is changed (the test can fail)
    rough = fine + rng.normal(size=fine.shape)
    assert not np.array_equal(np.asarray(_double(_halve(jnp.asarray(rough)))), rough)


@pytest.mark.parametrize("ghost", [1, 2])
def test_ghost_points_wrap_in_x_and_y_and_mirror_at_the_walls(ghost):
    rng = np.random.default_rng(4)
    nz, ny, nx = 3, 4, 5
    x = rng.normal(size=(2, nz, ny, nx, 6))
    padded = np.asarray(pad_ghost(jnp.asarray(x), ghost))
    assert padded.shape == (2, nz + 2 * ghost, ny + 2 * ghost, nx + 2 * ghost, 6)
    for p in range(nz + 2 * ghost):
        k = p - ghost
        mirrored = k < 0 or k >= nz
        source_k = -1 - k if k < 0 else (2 * nz - 1 - k if k >= nz else k)
        for q in range(ny + 2 * ghost):
            for r in range(nx + 2 * ghost):
                expected = x[:, source_k, (q - ghost) % ny, (r - ghost) % nx, :].copy()
                if mirrored:
                    expected[:, 5] *= -1.0  # w changes sign through a rigid wall
                np.testing.assert_array_equal(padded[:, p, q, r, :], expected,
                                              err_msg=f"padded point {(p, q, r)}")
    np.testing.assert_array_equal(np.asarray(strip_ghost(jnp.asarray(padded), ghost)), x)
    # the wall is between the last interior level and its ghost: below level 0 sits
    # level 0 again, w negated (so the centred w on the wall averages to zero)
    np.testing.assert_array_equal(padded[:, ghost - 1, ghost:-ghost, ghost:-ghost, 5],
                                  -x[:, 0, :, :, 5])
    np.testing.assert_array_equal(padded[:, ghost - 1, ghost:-ghost, ghost:-ghost, :5],
                                  x[:, 0, :, :, :5])


def test_ghost_zero_is_no_padding():
    x = jnp.ones((1, 2, 3, 4, 6))
    assert pad_ghost(x, 0) is x and strip_ghost(x, 0) is x


# --------------------------------------------------------------------------- the network


#: The default network (building one compiles its initialisers once per process,
#: which NeuralSGS.create then reuses).
DEFAULT = PRESETS["default"]


def test_network_maps_six_inputs_to_five_outputs_and_starts_at_zero():
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 4, 6, 8, len(INPUTS))))
    net = build_autoencoder(DEFAULT, seed=0)
    y = net(x)
    assert y.shape == (2, 4, 6, 8, len(OUTPUTS)) == (2, 4, 6, 8, 5)
    assert INPUTS == ("thrho_pert", "pi_pert", "qv_pert", "u", "v", "w")
    assert OUTPUTS == ("thrho", "qv", "u", "v", "w")
    # the head is all zeros (weights and bias): an untrained model corrects nothing
    assert not np.any(np.asarray(net.head.kernel[...]))
    assert not np.any(np.asarray(net.head.bias[...]))
    np.testing.assert_array_equal(np.asarray(y), 0.0)
    # the inner layers are not zero, and the seed draws them
    assert np.any(np.asarray(net.encoder[0][0].kernel[...]))
    other = build_autoencoder(DEFAULT, seed=1)
    assert not np.array_equal(np.asarray(other.encoder[0][0].kernel[...]),
                              np.asarray(net.encoder[0][0].kernel[...]))


def test_activation_is_an_option():
    x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 4, 6, 8, 6)))
    outputs = {}
    for act in ("gelu", "relu", "silu", "tanh"):
        config = NetworkConfig(widths=DEFAULT.widths, activation=act)
        net = build_autoencoder(config, seed=0)
        net.head.kernel[...] = jnp.ones_like(net.head.kernel[...])
        outputs[act] = np.asarray(net(x))
    assert NetworkConfig().activation == "gelu"
    for a in outputs:
        for b in outputs:
            if a < b:
                assert not np.allclose(outputs[a], outputs[b]), (a, b)


# --------------------------------------------------------------------------- inputs, statistics


def test_network_inputs_follow_their_definitions(small):
    grid, base, states = small
    got = np.asarray(network_inputs(states, base))
    th0, qv0 = base.th0[:, None, None], base.qv0[:, None, None]
    expected = inputs_by_hand(states.u, states.v, states.w, states.th, states.qv, states.pi,
                              th0, qv0)
    np.testing.assert_allclose(np.moveaxis(got, -1, 0), expected, rtol=1e-13, atol=1e-15)
    # the numpy path of the statistics gives the same
    np.testing.assert_allclose(np.asarray(network_inputs(states, base, np)), got,
                               rtol=1e-15, atol=0)


def test_statistics_from_states_match_numpy(small):
    grid, base, states = small
    stats = normalisation_from_states(states, base)
    th0, qv0 = base.th0[:, None, None], base.qv0[:, None, None]
    x = inputs_by_hand(states.u, states.v, states.w, states.th, states.qv, states.pi, th0, qv0)
    y = corrected_by_hand(states.u, states.v, states.w, states.th, states.qv)
    lo, hi, rng = statistics_by_hand(x, y)
    assert np.shape(stats.input_min) == (6, 4) and np.shape(stats.output_range) == (5, 4, 8, 6)
    np.testing.assert_allclose(stats.input_min, lo, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(stats.input_max, hi, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(stats.output_range, rng, rtol=1e-12, atol=1e-15)
    assert stats.grid_shape == grid.shape
    # every statistic is a real extreme: min < max per level, ranges positive
    assert np.all(stats.input_max > stats.input_min) and np.all(stats.output_range > 0)


def _dataset(states, base, grid, members=0):
    """A contract Dataset of ``states`` along time (60 s apart), or along time and
    ``members`` ensemble members (state index = time * members + member)."""
    lead = (-1, members) if members else (-1,)
    fields = {n: np.asarray(getattr(states, n)).reshape(*lead, *np.shape(getattr(states, n))[1:])
              for n in ("u", "v", "w", "th", "qv", "pi")}
    nt = fields["th"].shape[0]
    return states_to_dataset(fields, {k: np.asarray(getattr(base, k)) for k in
                                      ("th0", "qv0", "pi0")}, coordinates(grid),
                             60.0 * np.arange(nt), batch_dims=("member",) if members else (),
                             attrs={})


def assert_statistics_of(stats, states, base):
    """``stats`` are the extremes of ``states``, computed here by hand."""
    th0, qv0 = base.th0[:, None, None], base.qv0[:, None, None]
    x = inputs_by_hand(states.u, states.v, states.w, states.th, states.qv, states.pi, th0, qv0)
    y = corrected_by_hand(states.u, states.v, states.w, states.th, states.qv)
    lo, hi, rng = statistics_by_hand(x, y)
    np.testing.assert_allclose(stats.input_min, lo, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(stats.input_max, hi, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(stats.output_range, rng, rtol=1e-12, atol=1e-15)


def test_statistics_from_a_dataset_with_time_and_members_match_numpy(small):
    grid, base, _ = small
    states = random_states(np.random.default_rng(7), 6, grid, base)
    ds = _dataset(states, base, grid, members=2)
    assert ds["th"].dims == ("time", "member", "zh", "yh", "xh")
    # read a piece at a time: the pieces' extremes must be combined, every time counted
    assert_statistics_of(normalisation_from_data(ds), states, base)


def test_statistics_of_a_dataset_of_one_state(small):
    """A Dataset without leading dims is one state (the function adds a dim)."""
    grid, base, states = small
    ds = _dataset(states, base, grid).isel(time=0).drop_vars("time")
    assert ds["th"].dims == ("zh", "yh", "xh")
    try:
        one = normalisation_from_data(ds)
    except XlexError as err:
        pytest.fail(f"normalisation_from_data cannot read a Dataset of one state: {err}")
    th0, qv0 = base.th0[:, None, None], base.qv0[:, None, None]
    x = inputs_by_hand(states.u[0], states.v[0], states.w[0], states.th[0], states.qv[0],
                       states.pi[0], th0, qv0)
    np.testing.assert_array_equal(one.output_range, 0.0)  # one state: no range anywhere
    np.testing.assert_allclose(one.input_min, x.min(axis=(2, 3)), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(one.input_max, x.max(axis=(2, 3)), rtol=1e-13, atol=1e-15)


def test_statistics_of_make_training_data_windows_match_numpy(small):
    """The training sets of make_training_data (window x step, a base state per
    window) are what normalisation_from_data is documented to read."""
    grid, base, _ = small
    nt = 7
    states = random_states(np.random.default_rng(8), nt, grid, base)
    run = _dataset(states, base, grid)
    train, _ = make_training_data(run, factors=(1, 1, 1), every=1, steps=1,
                                  test_fraction=0.3, seed=0)
    assert train["th"].dims[:2] == ("window", "step")
    try:
        stats = normalisation_from_data(train)
    except XlexError as err:
        pytest.fail(f"normalisation_from_data cannot read a training set of "
                    f"make_training_data: {err}")
    times = train["time"].values.ravel()
    # the states of the training windows only (with the test window's states the
    # extremes would differ)
    index = np.round(times / 60.0).astype(int)
    sub = State(**{n: np.asarray(getattr(states, n))[index] for n in
                   ("u", "v", "w", "th", "qv", "pi")})
    assert_statistics_of(stats, sub, base)
    # a model made from the training set takes its grid and these statistics
    model = xlex.ml.NeuralSGS.create(train)
    assert model.grid == grid
    for name in ("input_min", "input_max", "output_range"):
        np.testing.assert_array_equal(getattr(model.normalisation, name), getattr(stats, name))


def test_normalise_maps_each_level_to_the_unit_interval_and_scale_multiplies():
    lo = np.arange(12.0).reshape(6, 2)
    hi = lo + np.array([[1.0, 0.0]] * 6)  # level 1 of every input never varied
    stats = Normalisation(input_min=lo, input_max=hi,
                          output_range=np.full((5, 2, 3, 4), 2.0))
    x = np.zeros((2, 3, 4, 6))
    x[0] = lo[:, 0]
    x[1] = hi[:, 1] + 7.0
    xn = stats.normalise(x)
    np.testing.assert_array_equal(xn[0], 0.0)      # the level's minimum -> 0
    np.testing.assert_array_equal(xn[1], 0.0)      # a level of zero span -> 0, not nan
    x[0] = hi[:, 0]
    np.testing.assert_array_equal(stats.normalise(x)[0], 1.0)  # maximum -> 1
    x[0] = 0.25 * lo[:, 0] + 0.75 * hi[:, 0]
    np.testing.assert_allclose(stats.normalise(x)[0], 0.75, rtol=1e-12)
    y = np.random.default_rng(9).normal(size=(2, 3, 4, 5))
    np.testing.assert_array_equal(stats.scale(y), 2.0 * y)
    assert stats.grid_shape == (2, 3, 4)


def test_no_states_no_statistics():
    from xlex.ml.normalisation import StatisticsAccumulator
    with pytest.raises(XlexError, match="at least one state"):
        StatisticsAccumulator().result()


# --------------------------------------------------------------------------- refused options


@pytest.mark.parametrize("kwargs, kind, words", [
    (dict(activation="swish"), OptionError, ["activation", "swish", "gelu"]),
    (dict(widths=()), OptionTypeError, ["widths"]),
    (dict(widths=(16, 0)), OptionTypeError, ["widths", "positive"]),
    (dict(widths=(16.0, 32)), OptionTypeError, ["widths"]),
    (dict(widths=16), OptionTypeError, ["widths", "tuple"]),
    (dict(convs_per_level=0), OptionError, ["convs_per_level", ">= 1"]),
    (dict(convs_per_level=True), OptionError, ["convs_per_level"]),
    (dict(ghost=-1), OptionError, ["ghost", ">= 0"]),
])
def test_bad_configurations_are_refused_when_built(kwargs, kind, words):
    with pytest.raises(kind) as info:
        NetworkConfig(**kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_list_of_widths_becomes_a_tuple():
    config = NetworkConfig(widths=[8, 16])
    assert config.widths == (8, 16) and hash(config) == hash(NetworkConfig(widths=(8, 16)))


@pytest.mark.parametrize("preset, shape, name, near", [
    ("default", (5, 8, 8), "nz=5", (4, 6)),      # ghost 1, halved once: n + 2 even
    ("default", (4, 8, 7), "nx=7", (6, 8)),
    ("paper", (8, 10, 8), "ny=10", (8, 12)),     # ghost 2, halved twice: n + 4 % 4
])
def test_a_grid_the_network_cannot_halve_is_refused_naming_sizes_that_work(preset, shape, name,
                                                                          near):
    config = PRESETS[preset]
    with pytest.raises(OptionError) as info:
        config.check_shape(shape)
    message = str(info.value)
    assert name in message and "Sizes that work" in message, message
    listed = [int(s) for s in message.split("Sizes that work near it: [")[1].split("]")[0]
              .split(",")]
    assert set(near) <= set(listed), (near, listed)
    axis = ("nz", "ny", "nx").index(name.split("=")[0])
    for size in listed:  # every size it names does work
        ok = list(shape)
        ok[axis] = size
        config.check_shape(tuple(ok))
    # through the scheme too, before any weight is drawn (the paper preset is only checked)
    nz, ny, nx = shape
    grid = Grid(nx=nx, ny=ny, nz=nz, dx=1000.0, dy=1000.0, dz=1000.0)
    stats = Normalisation(input_min=np.zeros((6, nz)), input_max=np.ones((6, nz)),
                          output_range=np.ones((5, nz, ny, nx)))
    with pytest.raises(OptionError, match=name):
        xlex.ml.NeuralSGS.create(grid, stats, preset=preset)


def test_paper_preset_is_a_deeper_wider_network_with_two_ghost_points():
    paper = PRESETS["paper"]
    assert paper.halvings == 2 and paper.ghost == 2 and paper.widths == (80, 160, 288)
    assert PRESETS["default"].halvings == 1
    paper.check_shape((8, 20, 20))
