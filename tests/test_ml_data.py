"""make_training_data (xlex/ml/data.py): coarse-grained look-ahead windows, split once.

A real truth run (a two-member warm-bubble ensemble on 12^3 cells, streamed to a
NetCDF and a Zarr store) checks the values, the times and the discrete
divergence of the coarse windows; small synthetic contract Datasets (random
fields) check the split, the options and every refused input.
"""

import json
import os

import dask.array
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import xlex
import xlex.ml.data
from xlex.core.dynamics.pressure import mass_divergence
from xlex.core.errors import DatasetError, GridMismatchError, OptionError, OptionTypeError
from xlex.core.grid import Grid
from xlex.core.state import BaseState
from xlex.diagnostics.coarsen import block_mean
from xlex.io.convert import coordinates, states_to_dataset
from xlex.io.store import StoreError
from xlex.ml.data import make_training_data
from xlex.transforms import coarsen

#: 12 x 12 x 12 fine cells -> 6 x 6 x 6 coarse cells, the smallest grid the model runs on.
FACTORS = (2, 2, 2)
#: 13 outputs 20 s apart; every=2, steps=2: windows start at coarse times 0 and 120 s.
BUBBLE = {"factors": FACTORS, "every": 2, "steps": 2}


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    """A two-member warm-bubble ensemble, 4 min in float64, and the stores it was written to."""
    folder = tmp_path_factory.mktemp("truth")
    members = [xlex.cases.warm_bubble(theta_c=tc, dx=2000.0, dz=1000.0) for tc in (2.0, 3.0)]
    fields = ["u", "v", "w", "th", "qv", "pipert", "thpert", "qvpert", "thrho"]
    ens = xr.concat(members, dim="member", data_vars=fields, coords="minimal",
                    compat="override", join="exact").assign_coords(member=[2.0, 3.0])
    paths = {}
    for suffix in (".nc", ".zarr"):
        paths[suffix] = folder / f"truth{suffix}"
        out = ens.lex.integrate("4min", dt=20.0, output_every="20s", precision="float64",
                                progress=False, store=paths[suffix])
    # a run with a store returns it read lazily: the in-memory copy is the eager case
    return out.load(), paths


def contract_run(seed, *, nt=40, nx=12, nz=6, dx=500.0, interval=10.0, members=0, times=None):
    """A synthetic contract Dataset of random fields (what a run's output looks like)."""
    grid = Grid(nx=nx, ny=nx, nz=nz, dx=dx, dy=dx, dz=dx)
    nt = nt if times is None else len(times)
    rng = np.random.default_rng(seed)
    batch = (members,) if members else ()
    shape = (nt, *batch, nz, nx, nx)
    fields = {name: rng.normal(size=shape) for name in ("u", "v", "pi")}
    fields["w"] = rng.normal(size=(nt, *batch, nz + 1, nx, nx))
    fields["th"] = 300.0 + rng.normal(size=shape)
    fields["qv"] = 1e-3 * rng.uniform(size=shape)
    base = {"th0": np.full(nz, 300.0), "qv0": np.linspace(1e-3, 1e-4, nz),
            "pi0": np.linspace(1.0, 0.9, nz)}
    times = np.arange(nt) * interval if times is None else np.asarray(times)
    return states_to_dataset(fields, base, coordinates(grid), times,
                             batch_dims=("member",) if members else (),
                             attrs={"title": f"synthetic run {seed}"})


def states(part):
    """The (run, member, time) of every state in ``part``."""
    member = part["member"].values if "member" in part.coords else \
        np.full(part.sizes["window"], -1)
    return {(int(r), int(m), float(t)) for r, m, row in
            zip(part["run"].values, member, part["time"].values, strict=True) for t in row}


def assert_windows_are_coarse_truth(part, runs, factors, every, steps):
    """Every window equals coarsen() of its run at its times, variable by variable."""
    fx, fy, fz = factors
    coarse = [coarsen(run, x=fx, y=fy, z=fz, every=every) for run in runs]
    for w in range(part.sizes["window"]):
        win = part.isel(window=w)
        truth = coarse[int(win["run"])]
        if "member" in truth.dims:
            truth = truth.isel(member=int(win["member"]))
        start = int(np.flatnonzero(truth["time"].values == float(win["start_time"]))[0])
        truth = truth.isel(time=slice(start, start + steps + 1))
        np.testing.assert_array_equal(win["time"].values, truth["time"].values)
        assert set(win.data_vars) == set(truth.data_vars)
        for name, da in win.data_vars.items():
            expected = truth[name]
            assert tuple("time" if d == "step" else d for d in da.dims) == expected.dims, name
            np.testing.assert_array_equal(da.values, expected.values, err_msg=name)


# --------------------------------------------------------------------------- values and physics


def test_windows_hold_the_coarse_grained_truth(truth):
    out, _ = truth
    train, test = make_training_data(out, test_fraction=0.25, seed=3, **BUBBLE)
    # 7 coarse times (0, 40, ..., 240 s); windows of 3 at 0 and 120 s; 2 members: 4 windows
    assert (train.sizes["window"], test.sizes["window"]) == (3, 1)
    assert (train.sizes["step"], train.sizes["xf"], train.sizes["zf"]) == (3, 6, 7)
    assert train["u"].dims == ("window", "step", "zh", "yh", "xf")
    assert train["w"].dims == ("window", "step", "zf", "yh", "xh")
    assert train["rho0"].dims == ("window", "zh")
    np.testing.assert_array_equal(train["lead_time"].values, [0.0, 40.0, 80.0])
    both = xr.concat([train, test], dim="window").sortby("window")
    np.testing.assert_array_equal(both["start_time"].values, [0.0, 120.0, 0.0, 120.0])
    np.testing.assert_array_equal(both["member"].values, [0, 0, 1, 1])
    np.testing.assert_array_equal(both["time"].values[1], [120.0, 160.0, 200.0])
    for part in (train, test):
        assert_windows_are_coarse_truth(part, [out], FACTORS, every=2, steps=2)
    assert train.attrs["coarsened"] == "x=2, y=2, z=2, every=2"
    assert train.attrs["xlex_training_interval"] == 40.0


def _max_divergence(u, v, w, mass, mass_faces, grid):
    """Largest |div(rho0 thrho0 u)| over every state of (..., z, y, x) wind arrays."""
    def div(u, v, w):
        return mass_divergence(u, v, w, mass, mass_faces, grid)
    u, v, w = (jnp.asarray(a).reshape((-1,) + a.shape[-3:]) for a in (u, v, w))
    return float(jnp.max(jnp.abs(jax.vmap(div)(u, v, w))))


def test_coarse_winds_are_divergence_free_to_round_off(truth):
    """div(rho0 thrho0 u) by the model's own operator: the fine run holds it to solver
    tolerance; the coarse windows hold it on the coarse grid (centre weight = block mean
    of the fine one, face weight = the fine one at the kept faces) at least as well."""
    out, _ = truth
    fine = Grid(nx=12, ny=12, nz=12, dx=2000.0, dy=2000.0, dz=1000.0)
    base = BaseState(*(jnp.asarray(out[n].values) for n in ("th0", "qv0", "pi0")))
    fine_level = _max_divergence(out["u"].values, out["v"].values, out["w"].values,
                                 base.mass, base.mass_faces, fine)
    m = np.asarray(base.mass)
    scale = float(np.abs(m[:, None, None] * out["u"].values).max()) / fine.dx  # one flux term
    assert fine_level < 1e-12 * scale

    coarse = Grid(nx=6, ny=6, nz=6, dx=4000.0, dy=4000.0, dz=2000.0)
    mass = jnp.asarray(block_mean(m, (2,)))
    mass_faces = jnp.asarray(np.asarray(base.mass_faces)[::2])
    train, test = make_training_data(out, test_fraction=0.25, **BUBBLE)
    for part in (train, test):
        level = _max_divergence(part["u"].values, part["v"].values, part["w"].values,
                                mass, mass_faces, coarse)
        assert level <= fine_level + 1e-15 * scale
    # the check has teeth: u of one step with v and w of another is far from divergence-free
    mixed = _max_divergence(train["u"].values[:, 1:], train["v"].values[:, :-1],
                            train["w"].values[:, :-1], mass, mass_faces, coarse)
    assert mixed > 1e-6 * scale


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_a_store_stays_lazy_and_gives_the_same_windows(truth, suffix):
    out, paths = truth
    lazy_train, lazy_test = make_training_data(paths[suffix], test_fraction=0.25, **BUBBLE)
    train, test = make_training_data(out, test_fraction=0.25, **BUBBLE)
    for lazy, eager in ((lazy_train, train), (lazy_test, test)):
        assert isinstance(lazy["u"].data, dask.array.Array)
        assert isinstance(lazy["thrho"].data, dask.array.Array)
        assert isinstance(eager["u"].data, np.ndarray)
        xr.testing.assert_identical(lazy.drop_attrs().compute(), eager.drop_attrs())
    assert json.loads(lazy_train.attrs["xlex_training_sources"]) == [
        os.path.abspath(paths[suffix])]


# --------------------------------------------------------------------------- the split


RUNS = [contract_run(seed) for seed in range(3)]  # 40 outputs each


def test_train_and_test_are_disjoint_and_cover_every_window():
    train, test = make_training_data(RUNS, factors=FACTORS, every=1, steps=3,
                                     test_fraction=0.2, seed=7)
    # 40 coarse outputs per run, windows of 4 with stride 4: 10 per run, 30 in all
    assert (train.sizes["window"], test.sizes["window"]) == (24, 6)
    assert not states(train) & states(test)
    assert len(states(train)) == 24 * 4 and len(states(test)) == 6 * 4
    ids = np.concatenate([train["window"].values, test["window"].values])
    np.testing.assert_array_equal(np.sort(ids), np.arange(30))
    for part in (train, test):
        assert_windows_are_coarse_truth(part, RUNS, FACTORS, every=1, steps=3)
        assert json.loads(part.attrs["xlex_training_test_windows"]) == \
            test["window"].values.tolist()
        assert part.attrs["xlex_training_seed"] == 7
        assert part.attrs["xlex_training_test_fraction"] == 0.2
        assert list(part.attrs["xlex_training_factors"]) == [2, 2, 2]
        assert (part.attrs["xlex_training_every"], part.attrs["xlex_training_steps"],
                part.attrs["xlex_training_stride"], part.attrs["xlex_training_windows"]) == \
            (1, 3, 4, 30)
        assert json.loads(part.attrs["xlex_training_sources"]) == [
            f"Dataset: synthetic run {i}" for i in range(3)]
    assert (train.attrs["xlex_training_part"], test.attrs["xlex_training_part"]) == \
        ("train", "test")


def test_the_split_is_fixed_by_the_seed():
    first = make_training_data(RUNS, factors=FACTORS, every=1, steps=3, seed=11)
    again = make_training_data(RUNS, factors=FACTORS, every=1, steps=3, seed=11)
    other = make_training_data(RUNS, factors=FACTORS, every=1, steps=3, seed=12)
    for a, b in zip(first, again, strict=True):
        xr.testing.assert_identical(a, b)
    assert first[1]["window"].values.tolist() != other[1]["window"].values.tolist()
    for seed, (_, test) in ((11, first), (12, other)):  # the documented recipe
        expected = np.sort(np.random.default_rng(seed).choice(30, size=3, replace=False))
        np.testing.assert_array_equal(test["window"].values, expected)


def test_no_test_set_and_ensembles():
    runs = [contract_run(0, nt=9, members=3), contract_run(1, nt=9)]
    train, test = make_training_data(runs, factors=FACTORS, every=2, steps=1,
                                     test_fraction=0.0)
    # 5 coarse outputs: windows at 0 and 2 (stride 2); 3 members + 1 run: 8 windows
    assert (train.sizes["window"], test.sizes["window"]) == (8, 0)
    np.testing.assert_array_equal(train["member"].values, [0, 0, 1, 1, 2, 2, -1, -1])
    np.testing.assert_array_equal(train["run"].values, [0] * 6 + [1] * 2)
    assert_windows_are_coarse_truth(train, runs, FACTORS, every=2, steps=1)
    assert json.loads(train.attrs["xlex_training_test_windows"]) == []


def test_a_longer_stride_spaces_the_windows():
    train, test = make_training_data(RUNS[0], factors=FACTORS, every=2, steps=2,
                                     stride=5, test_fraction=0.0)
    # 20 coarse outputs 20 s apart; windows of 3 starting every 5 outputs: 0, 5, 10, 15
    np.testing.assert_array_equal(train["start_time"].values, [0.0, 100.0, 200.0, 300.0])
    np.testing.assert_array_equal(train["time"].values[1], [100.0, 120.0, 140.0])
    assert_windows_are_coarse_truth(train, RUNS[:1], FACTORS, every=2, steps=2)


# --------------------------------------------------------------------------- bad input


def _runs(*changes):
    """RUNS[0] followed by each change (a Dataset)."""
    return [RUNS[0], *changes]


BAD = [
    # (truth_runs, options, error, words in the message)
    (RUNS[0], {"factors": (5, 2, 2)}, DatasetError, ["nx=12 by x=5", "divisors of 12"]),
    (RUNS[0], {"factors": (4, 4, 2)}, DatasetError, ["coarse grid would have 3 x 3 x 3",
                                                     "smaller factors"]),
    (_runs(contract_run(1, nt=6)), {"every": 2, "steps": 3}, DatasetError,
     ["truth run 1", "6 output(s)", "need 7 outputs", "lower steps or every"]),
    (_runs(contract_run(1, dx=400.0)), {}, GridMismatchError, ["truth run 1", "another grid"]),
    (_runs(contract_run(1, interval=20.0)), {}, GridMismatchError,
     ["every 20 s", "every 10 s"]),
    (_runs(contract_run(1, times=np.r_[0.0, 10.0, 25.0, 30.0, 40.0, 50.0, 60.0])), {"steps": 1},
     DatasetError, ["truth run 1", "not equally spaced"]),
    (_runs(xr.Dataset({"temperature": ("x", np.ones(3))})), {}, DatasetError,
     ["truth run 1", "not an xlex run", "'u'", "output of integrate"]),
    (_runs(RUNS[1].drop_vars("rho0")), {}, DatasetError, ["['rho0']"]),
    (_runs(RUNS[1].isel(time=0)), {}, DatasetError, ["truth run 1", "no time axis"]),
    (_runs(RUNS[1].rename(u="uu", v="u").rename(uu="v")), {}, DatasetError,
     ["not an xlex run", "'u' has dims"]),
    (RUNS[0], {"test_fraction": 1.0}, OptionError, ["[0, 1)"]),
    (RUNS[0], {"test_fraction": -0.1}, OptionError, ["[0, 1)"]),
    (RUNS[0], {"test_fraction": True}, OptionTypeError, ["test_fraction"]),
    (RUNS[0], {"test_fraction": "0.1"}, OptionTypeError, ["test_fraction"]),
    (contract_run(1, nt=4), {"steps": 3, "test_fraction": 0.5}, DatasetError,
     ["1 window(s)", "leaves none for training"]),
    (RUNS[0], {"every": True}, OptionTypeError, ["every must be an integer", "bool"]),
    (RUNS[0], {"steps": 2.0}, OptionTypeError, ["steps must be an integer"]),
    (RUNS[0], {"steps": 0}, OptionError, ["steps must be an integer >= 1"]),
    (RUNS[0], {"factors": (True, 2, 2)}, OptionTypeError, ["factors[0] (x)"]),
    (RUNS[0], {"factors": (2, 2)}, OptionTypeError, ["three integers"]),
    (RUNS[0], {"factors": "662"}, OptionTypeError, ["three integers"]),
    (RUNS[0], {"seed": True}, OptionTypeError, ["seed"]),
    (RUNS[0], {"seed": -1}, OptionError, ["seed must be an integer >= 0"]),
    (RUNS[0], {"steps": 3, "stride": 3}, OptionError, ["stride >= steps + 1 = 4"]),
    ([], {}, OptionError, ["empty"]),
    (42, {}, OptionTypeError, ["truth_runs", "int"]),
    ([RUNS[0], RUNS[0]["u"]], {}, OptionTypeError, ["truth run 1 is a DataArray"]),
    ([RUNS[0], RUNS[1], RUNS[0]], {}, OptionError, ["truth runs 0 and 2 are the same run"]),
]


@pytest.mark.parametrize("runs, options, error, words", BAD)
def test_bad_input_is_refused_before_any_coarse_graining(monkeypatch, runs, options, error,
                                                         words):
    def no_work(*args, **kwargs):
        raise AssertionError("coarsen was called before the input was checked")
    monkeypatch.setattr(xlex.ml.data, "coarsen", no_work)
    kwargs = {"factors": FACTORS, "every": 1, "steps": 3, **options}
    with pytest.raises(error) as info:
        make_training_data(runs, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_path_that_is_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        make_training_data([RUNS[0], tmp_path / "missing.nc"], factors=FACTORS)
    same = tmp_path / "run.nc"
    RUNS[0].to_netcdf(same)
    with pytest.raises(OptionError, match="truth runs 0 and 1 are the same run"):
        make_training_data([same, str(same)], factors=FACTORS)
