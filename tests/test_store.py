"""Streaming output: ``integrate(store=...)``, ``overwrite``, ``xlex.resume`` after a
kill or an incomplete record, blow-ups and Ctrl-C with a store, ``xlex run -o`` /
``xlex run --resume``.

The physics runs are 12 x 12 x 6 cells of 2 km with dt = 20 s in float64; each real
``integrate`` call compiles its loop (a few seconds), so the reference run is a module
fixture. Logic that does not need the physics uses a cheap stand-in step. Resume is also
checked bit for bit for each physics scheme (recorded in the ``xlex_physics`` attribute)
on 12 x 12 x 12 cells of 2 km x 1 km.
"""

import contextlib
import dataclasses
import io
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import jax
import jax.numpy as jnp
import netCDF4
import numpy as np
import pytest
import xarray as xr
from fakes import solve_info

import xlex
import xlex.runner
from xlex import cli
from xlex.core.errors import BlowUpError, OptionError, OptionTypeError, XlexError
from xlex.io.store import COMPLETE, NetCDFStore, complete_records, open_store
from xlex.options import LEGACY_OPTIONS, PHYSICS_ATTR, recorded_physics, resolve_physics

RUN = dict(dt=20.0, output_every="1min", precision="float64", progress=False)
FIELDS = ("u", "v", "w", "th", "qv", "pipert")
DERIVED = ("thpert", "qvpert", "thrho", "pressure_iterations", "pressure_residual")


# --------------------------------------------------------------------------- helpers


def fake_make_step(update):
    """A ``make_step`` whose step applies ``update(state) -> state`` (cheap to compile)."""
    def make_step(grid, physics, dt):
        def step(s, base, params):
            return update(s), solve_info(s.th.dtype)
        return step
    return make_step


def spy_make_step(seen, update):
    """A fake ``make_step`` (as :func:`fake_make_step`) that appends (physics, dt, dtype
    of the state) to ``seen`` each time a step is built and traced."""
    fake = fake_make_step(update)

    def make_step(grid, physics, dt):
        step = fake(grid, physics, dt)

        def spied(s, base, params):
            seen.append((physics, dt, s.th.dtype))
            return step(s, base, params)
        return spied
    return make_step


def forget_compiled(monkeypatch):
    """Start from an empty cache of compiled chunks (so that the next run builds and
    traces its step again)."""
    monkeypatch.setattr(xlex.runner, "_COMPILED", {})


def warm_by(kelvin):
    """Stand-in physics: th warms and u speeds up a little every step."""
    def update(s):
        return dataclasses.replace(s, th=s.th + kelvin, u=s.u + 0.01)
    return update


def assert_records_equal(a, b, names=FIELDS, times=True):
    """Bit-for-bit equality of the records of two Datasets."""
    if times:
        np.testing.assert_array_equal(a["time"].values, b["time"].values)
    for name in names:
        assert a[name].dims == b[name].dims, name
        assert np.array_equal(a[name].values, b[name].values), (
            f"{name} differs: max |diff| "
            f"{np.nanmax(np.abs(a[name].values - b[name].values)):g}")


def spoil_from(path, k, garbage=1.0e30):
    """Mark records ``k:`` of a store incomplete and fill their fields with garbage,
    as a run killed while writing record ``k`` could leave them."""
    with netCDF4.Dataset(path, "a") as nc:
        n = len(nc.dimensions["time"])
        nc.variables[COMPLETE][k:] = np.zeros(n - k, np.int8)
        for name in ("th", "u", "pipert"):
            var = nc.variables[name]
            var[k:] = np.full(var[k:].shape, garbage)


def run_main(argv):
    """``cli.main(argv)`` -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(xlex.__file__)))]
        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


@contextlib.contextmanager
def child(script, *args):
    """A Python process running ``script`` with ``args`` (text pipes), killed and
    reaped on leaving, whatever happened."""
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


@pytest.fixture(scope="module")
def ds0():
    return xlex.cases.warm_bubble(theta_c=5.0, dx=2000.0)


@pytest.fixture(scope="module")
def streamed(ds0, tmp_path_factory):
    """(path, returned Dataset) of a 5-min run streamed to a store."""
    path = tmp_path_factory.mktemp("store") / "run.nc"
    out = ds0.lex.integrate("5min", store=path, **RUN)
    return path, out


@pytest.fixture
def copy_of(streamed, tmp_path):
    """A fresh copy of the streamed store to spoil and resume."""
    path = tmp_path / "copy.nc"
    shutil.copyfile(streamed[0], path)
    return path


# --------------------------------------------------------------------------- writing


def test_store_holds_every_record(streamed):
    path, out = streamed
    assert complete_records(path) == 6
    with xr.open_dataset(path) as f:
        np.testing.assert_array_equal(f["time"].values, 60.0 * np.arange(6))
        assert f.sizes["time"] == out.sizes["time"] == 6
        assert set(out.data_vars) <= set(f.data_vars)
        assert set(f.data_vars) - set(out.data_vars) == {COMPLETE}
        np.testing.assert_array_equal(f[COMPLETE].values, np.ones(6))
        for name in out.data_vars:
            assert f[name].dims == out[name].dims, name
            assert f[name].dtype == np.float64, name
        assert f.encoding.get("unlimited_dims") == {"time"}


def test_store_carries_cf_attributes(streamed):
    path, out = streamed
    with xr.open_dataset(path) as f:
        for name in list(out.data_vars) + list(out.coords):
            for key in ("units", "long_name", "standard_name", "axis", "c_grid_axis_shift"):
                if key in out[name].attrs:
                    assert f[name].attrs[key] == out[name].attrs[key], (name, key)
        assert f["th"].attrs["units"] == "K"
        assert f["w"].attrs["standard_name"] == "upward_air_velocity"
        assert f["time"].attrs["units"] == "seconds"
        assert f["xf"].attrs["c_grid_axis_shift"] == -0.5
        assert f.attrs["Conventions"].startswith("CF-")


def test_store_records_the_run_options(streamed):
    path, out = streamed
    with xr.open_dataset(path) as f:
        attrs = f.attrs
        assert attrs["xlex_dt"] == 20.0
        assert attrs["xlex_output_every"] == 60.0
        assert attrs["xlex_duration"] == 300.0
        assert attrs["xlex_start_time"] == 0.0
        assert attrs["xlex_precision"] == "float64"
        assert recorded_physics(attrs).pressure.method == "pcg"
        assert attrs["xlex_status"] == "complete"
        assert attrs["case"] == "warm_bubble"
        # the physics is one attribute, and nothing of it is left out
        assert recorded_physics(attrs) == xlex.Physics()
        assert attrs[PHYSICS_ATTR] == out.attrs[PHYSICS_ATTR]
        assert not [k for k in attrs if k.startswith("xlex_") and k[5:] in LEGACY_OPTIONS]
        # every attribute of the returned Dataset but the wall time is in the file
        for key, value in out.attrs.items():
            if key == "xlex_wall_seconds":
                continue
            assert key in attrs, key
            assert np.array_equal(np.asarray(attrs[key]), np.asarray(value)), key


def test_store_equals_the_returned_dataset(streamed):
    path, out = streamed
    with xr.open_dataset(path) as f:
        loaded = f.drop_vars(COMPLETE).load()
    expected = out.copy()
    expected.attrs = {k: v for k, v in out.attrs.items() if k != "xlex_wall_seconds"}
    xr.testing.assert_identical(loaded, expected)
    xr.testing.assert_identical(open_store(path), expected)
    assert_records_equal(loaded, out, FIELDS + DERIVED)


def test_a_run_with_a_store_returns_it_read_lazily(streamed, ds0):
    path, out = streamed
    import dask.array
    assert isinstance(out["th"].data, dask.array.Array)  # left in the file until used
    unstored = ds0.lex.integrate("5min", **RUN)  # the same run, kept in memory
    assert isinstance(unstored["th"].data, np.ndarray)
    assert_records_equal(out, unstored, FIELDS + DERIVED)
    xlex.io.store.check_not_open(path)  # the lazy Dataset holds no file open


@pytest.mark.parametrize("suffix", ["nc", "zarr"])
def test_memory_does_not_grow_with_the_outputs_of_a_stored_run(ds0, tmp_path, monkeypatch,
                                                                suffix):
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(warm_by(1.0)))
    most = {}
    alive = []  # every Records stays alive, so that no later one reuses its id
    add = xlex.runner.Records.add

    def counting_add(self, *args):
        add(self, *args)
        alive.append(self)
        most[id(self)] = max(most.get(id(self), 0), self.held)

    monkeypatch.setattr(xlex.runner.Records, "add", counting_add)
    stored = ds0.lex.integrate("20min", store=tmp_path / f"run.{suffix}", **RUN)
    kept = ds0.lex.integrate("20min", **RUN)
    held_stored, held_kept = most.values()
    assert held_kept == 21  # without a store every record stays in memory
    assert held_stored <= 2  # with one, at most the record written and the one before
    assert_records_equal(stored, kept, FIELDS + DERIVED)
    # resumed further, the store is still read lazily and the old records are the same
    longer = xlex.resume(tmp_path / f"run.{suffix}", "5min", progress=False)
    assert longer.sizes["time"] == 26 and list(most.values())[2] <= 2
    assert_records_equal(longer.isel(time=slice(0, 21)), kept, FIELDS + DERIVED)


def test_open_store_selects_records(streamed):
    path, out = streamed
    last = open_store(path, records=[-1])
    assert_records_equal(last, out.isel(time=[-1]))
    lazy = open_store(path, records=slice(1, 3), load=False)
    try:
        np.testing.assert_array_equal(lazy["time"].values, [60.0, 120.0])
    finally:
        lazy.close()


def test_no_store_writes_no_file(ds0, tmp_path, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(warm_by(1.0)))
    monkeypatch.chdir(tmp_path)
    out = ds0.lex.integrate("1min", **RUN)
    assert out.sizes["time"] == 2
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- overwriting


def no_compile(*args, **kwargs):
    raise AssertionError("the model was built although the run was refused")


@pytest.mark.parametrize("content", ["bytes", "store"])
def test_an_existing_file_is_never_overwritten(ds0, streamed, tmp_path, monkeypatch,
                                               content):
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    path = tmp_path / "precious.nc"
    if content == "bytes":
        path.write_bytes(b"precious results, not even NetCDF\n")
    else:
        shutil.copyfile(streamed[0], path)
    before = path.read_bytes(), path.stat().st_mtime_ns
    with pytest.raises(XlexError) as info:
        ds0.lex.integrate("1min", store=path, **RUN)
    assert isinstance(info.value, FileExistsError)
    assert str(path) in str(info.value)
    assert "overwrite" in str(info.value)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.nc"]


def test_store_given_as_a_string(ds0, streamed, tmp_path, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    path = tmp_path / "precious.nc"
    shutil.copyfile(streamed[0], path)
    with pytest.raises(FileExistsError, match="precious.nc"):
        ds0.lex.integrate("1min", store=str(path), **RUN)


def test_overwrite_replaces_the_file(ds0, tmp_path, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(warm_by(1.0)))
    path = tmp_path / "old.nc"
    path.write_bytes(b"old\n")
    out = ds0.lex.integrate("2min", store=path, overwrite=True, **RUN)
    assert complete_records(path) == 3
    assert_records_equal(open_store(path), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.nc"]  # no .part left


def test_overwrite_keeps_the_file_when_the_run_is_refused(ds0, tmp_path, monkeypatch):
    # a bad option or Dataset is found before the old file is touched
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    path = tmp_path / "old.nc"
    path.write_bytes(b"old\n")
    with pytest.raises(OptionError, match="output_every"):
        ds0.lex.integrate("2min", store=path, overwrite=True, **{**RUN, "dt": 25.0})
    with pytest.raises(xlex.DatasetError, match="th0"):
        ds0.drop_vars("th0").lex.integrate("2min", store=path, overwrite=True, **RUN)
    with pytest.raises(xlex.CFLError):
        ds0.assign(u=ds0["u"] + 500.0).lex.integrate("2min", store=path, overwrite=True,
                                                     **RUN)
    assert path.read_bytes() == b"old\n"


@pytest.mark.parametrize("name", ["out.txt", "out", "out.nc.bak", "out.h5"])
def test_store_must_be_netcdf_or_zarr(ds0, tmp_path, monkeypatch, name):
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    path = tmp_path / name
    with pytest.raises(OptionError) as info:
        ds0.lex.integrate("1min", store=path, **RUN)
    assert "store" in str(info.value) and name in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_store_folder_must_exist(ds0, tmp_path, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    path = tmp_path / "no" / "such" / "folder" / "out.nc"
    with pytest.raises(OptionError, match="store"):
        ds0.lex.integrate("1min", store=path, **RUN)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("store", [123, ["out.nc"]])
def test_store_of_the_wrong_type(ds0, monkeypatch, store):
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    with pytest.raises(xlex.OptionTypeError, match="store"):
        ds0.lex.integrate("1min", store=store, **RUN)


# --------------------------------------------------------------------------- resuming


@pytest.mark.parametrize("k", [5, 2])
def test_resume_after_an_incomplete_record(streamed, copy_of, k):
    path, out = streamed
    spoil_from(copy_of, k)
    assert complete_records(copy_of) == k
    assert_records_equal(open_store(copy_of), out.isel(time=slice(0, k)))
    resumed = xlex.resume(copy_of, progress=False)
    assert complete_records(copy_of) == 6
    assert_records_equal(resumed, out, FIELDS + DERIVED)
    with xr.open_dataset(copy_of) as f:
        assert_records_equal(f, out, FIELDS + DERIVED)
        assert f.attrs["xlex_status"] == "complete"
        np.testing.assert_array_equal(f[COMPLETE].values, np.ones(6))


def test_resume_of_a_complete_store_does_nothing(streamed, copy_of, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    before = copy_of.read_bytes()
    resumed = xlex.resume(copy_of, progress=False)
    assert_records_equal(resumed, streamed[1], FIELDS + DERIVED)
    assert copy_of.read_bytes() == before


def test_resume_with_a_longer_duration_appends(ds0, tmp_path, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(warm_by(1.0)))
    reference = ds0.lex.integrate("4min", **RUN)
    path = tmp_path / "short.nc"
    ds0.lex.integrate("2min", store=path, **RUN)
    resumed = xlex.resume(path, "2min", progress=False)
    assert_records_equal(resumed, reference, FIELDS + DERIVED)
    assert complete_records(path) == 5


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_an_extension_killed_part_way_stays_running_and_resumes_to_its_end(
        ds0, tmp_path, monkeypatch, suffix):
    """resume(duration=...) updates the store's planned duration and status when it
    starts, so an extension cut short is not reported complete and a plain resume
    finishes it (issue 15 item 4)."""
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(warm_by(1.0)))
    reference = ds0.lex.integrate("5min", **RUN)
    path = tmp_path / f"run{suffix}"
    ds0.lex.integrate("2min", store=path, **RUN)
    calls = {"n": 0}
    real = xlex.runner.Records.add

    def killed_after_one_record(self, *args):
        real(self, *args)
        calls["n"] += 1
        if calls["n"] == 2:  # the initial record, then one new one: stop here
            raise SystemExit("killed")

    monkeypatch.setattr(xlex.runner.Records, "add", killed_after_one_record)
    with pytest.raises(SystemExit):
        xlex.resume(path, "3min", progress=False)
    monkeypatch.setattr(xlex.runner.Records, "add", real)
    attrs = open_store(path).attrs
    assert attrs["xlex_status"] == "running"
    assert float(attrs["xlex_duration"]) == 300.0
    finished = xlex.resume(path, progress=False)  # no duration: to the planned end
    assert finished.attrs["xlex_status"] == "complete"
    assert_records_equal(finished, reference, FIELDS + DERIVED)


def test_resume_a_run_that_started_later(ds0, tmp_path, monkeypatch):
    # the run starts from the last record of an earlier run (t = 120 s): resume must
    # aim at 120 s + duration, not at the duration
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(warm_by(1.0)))
    first = ds0.lex.integrate("2min", **RUN)
    reference = first.lex.integrate("3min", **RUN)
    path = tmp_path / "later.nc"
    first.lex.integrate("3min", store=path, **RUN)
    spoil_from(path, 2)
    resumed = xlex.resume(path, progress=False)
    np.testing.assert_array_equal(resumed["time"].values, [120.0, 180.0, 240.0, 300.0])
    assert_records_equal(resumed, reference, FIELDS + DERIVED)


def test_resume_an_ensemble(ds0, tmp_path, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(warm_by(0.5)))
    prognostic = ["u", "v", "w", "th", "qv", "pipert", "thpert", "qvpert", "thrho"]
    ens = xr.concat([ds0, ds0.assign(th=ds0["th"] + 0.7)], dim="member",
                    data_vars=prognostic, coords="minimal", compat="override", join="exact")
    reference = ens.lex.integrate("3min", **RUN)
    path = tmp_path / "ens.nc"
    ens.lex.integrate("3min", store=path, **RUN)
    spoil_from(path, 2)
    resumed = xlex.resume(path, progress=False)
    assert resumed["th"].dims == ("time", "member", "zh", "yh", "xh")
    assert_records_equal(resumed, reference, FIELDS + DERIVED)


def test_resume_restores_the_run_options(ds0, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(xlex.runner, "make_step", spy_make_step(seen, warm_by(1.0)))
    forget_compiled(monkeypatch)
    options = dict(solver="bicgstab", tolerance=1e-8, max_iterations=50, vertical_order=3,
                   momentum_advection="weno5", weno_epsilon=1e-5, coriolis=1e-4,
                   geostrophic_u=2.0, geostrophic_v=-1.0)
    path = tmp_path / "options.nc"
    ds0.lex.integrate("2min", store=path, **{**RUN, "dt": 30.0}, **options)
    spoil_from(path, 1)
    forget_compiled(monkeypatch)  # resume builds its step again
    xlex.resume(path, progress=False)
    (first, dt_first, dtype_first), (again, dt_again, dtype_again) = seen
    assert dt_first == dt_again == 30.0
    assert first == resolve_physics(shorthand=options)
    assert again == first and again.to_dict() == first.to_dict()
    assert dtype_first == dtype_again == np.float64  # precision="float64"
    assert again.pressure.method == "bicgstab"


def test_resume_restores_the_subgrid_options(ds0, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(xlex.runner, "make_step", spy_make_step(seen, warm_by(1.0)))
    forget_compiled(monkeypatch)
    path = tmp_path / "sgs.nc"
    ds0.lex.integrate("2min", store=path, sgs="smagorinsky", cs=0.2, prandtl=0.5,
                      stability=False, **RUN)
    spoil_from(path, 1)
    forget_compiled(monkeypatch)
    xlex.resume(path, progress=False)
    (first, _, _), (again, _, _) = seen
    assert first.sgs == xlex.Smagorinsky(cs=0.2, prandtl=0.5, stability=False)
    assert again == first and again.to_dict() == first.to_dict()


#: Physics of the resume tests below, by name.
SCHEMES = {
    "none": xlex.Physics(),
    "smagorinsky": xlex.Physics(sgs=xlex.Smagorinsky(cs=0.2)),
    "dynamic": xlex.Physics(sgs=xlex.DynamicSmagorinsky()),
    "surface": xlex.Physics(sgs=xlex.Smagorinsky(),
                            surface=xlex.BulkSurface(surface_temperature=305.0)),
    "fplane": xlex.Physics(rotation=xlex.FPlane(f=1e-4, geostrophic_wind=(5.0, -2.0))),
}


@pytest.mark.parametrize("name", list(SCHEMES))
def test_resume_of_each_scheme_is_bit_for_bit(ds0, tmp_path, name):
    # the physics goes to the store as one attribute (xlex_physics) and resume reads it
    # back: the resumed records equal those of the uninterrupted run bit for bit.
    # On ds0 with RUN, the programs of "none" (the streamed fixture's) and of
    # "smagorinsky" (the Smagorinsky kill tests') are compiled once for the module.
    physics = SCHEMES[name]
    reference = ds0.lex.integrate("3min", physics=physics, **RUN)
    names = FIELDS + DERIVED + tuple(physics.outputs)
    assert set(physics.outputs) <= set(reference.data_vars)
    path = tmp_path / f"{name}.nc"
    ds0.lex.integrate("3min", physics=physics, store=path, **RUN)
    with xr.open_dataset(path) as f:
        assert recorded_physics(f.attrs) == physics
        assert not [k for k in f.attrs if k.startswith("xlex_") and k[5:] in LEGACY_OPTIONS]
    spoil_from(path, 2)  # killed while writing record 2 of 4
    assert complete_records(path) == 2
    resumed = xlex.resume(path, progress=False)
    assert complete_records(path) == 4
    np.testing.assert_array_equal(resumed["time"].values, [0.0, 60.0, 120.0, 180.0])
    for var in names:
        np.testing.assert_array_equal(resumed[var].values, reference[var].values, err_msg=var)
    assert recorded_physics(resumed.attrs) == physics
    assert resumed.attrs["xlex_status"] == "complete"


def test_resume_refuses_a_file_not_written_by_a_store(ds0, tmp_path, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    path = tmp_path / "plain.nc"
    ds0.to_netcdf(path)
    with pytest.raises(XlexError) as info:
        xlex.resume(path, progress=False)
    assert str(path) in str(info.value) and "xlex_dt" in str(info.value)


def test_resume_refuses_a_store_without_a_complete_record(copy_of, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    spoil_from(copy_of, 0)
    with pytest.raises(XlexError, match="no complete record"):
        xlex.resume(copy_of, progress=False)


@pytest.mark.parametrize("name, value", [("xlex_dt", "five"), ("xlex_output_every", "60 s"),
                                         ("xlex_duration", np.array([60.0, 120.0]))])
def test_resume_refuses_a_recorded_option_that_is_not_a_number(copy_of, monkeypatch, name,
                                                              value):
    """A run option edited in the file is named, never read as garbage or a default."""
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    with netCDF4.Dataset(copy_of, "a") as nc:
        nc.setncattr(name, value)
    longer = None if name == "xlex_duration" else "1min"  # a complete run needs no dt
    with pytest.raises(XlexError, match=rf"{name} is .*not a number of seconds"):
        xlex.resume(copy_of, longer, progress=False)


@pytest.mark.parametrize("progress", ["no", 0, None])
def test_progress_must_be_true_or_false(ds0, monkeypatch, progress):
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    with pytest.raises(OptionTypeError, match="progress must be True or False"):
        ds0.lex.integrate("1min", dt=20.0, output_every="1min", progress=progress)


def test_a_store_open_in_this_process_is_refused_before_compiling(copy_of, ds0, monkeypatch):
    """A Dataset still open on the store (a notebook's xr.open_dataset) made HDF5 fail
    with OSError -101 at the first append, after compiling; now resume and an
    overwriting run say so first, and the file is untouched."""
    from xlex.io.store import StoreError
    monkeypatch.setattr(xlex.runner, "make_step", no_compile)
    before = copy_of.read_bytes()
    reader = xr.open_dataset(copy_of)
    reader["th"].load()
    try:
        with pytest.raises(StoreError, match="still open in this process"):
            xlex.resume(copy_of, "1min", progress=False)
        with pytest.raises(StoreError, match="still open in this process"):
            ds0.lex.integrate("1min", store=copy_of, overwrite=True, **RUN)
    finally:
        reader.close()
    assert copy_of.read_bytes() == before


def test_resume_of_a_missing_file(tmp_path):
    with pytest.raises(XlexError, match="missing.nc"):
        xlex.resume(tmp_path / "missing.nc", progress=False)


# --------------------------------------------------------------------------- kills


CHILD = textwrap.dedent("""
    import sys, time
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import xlex
    from xlex.io import store

    _append = store.NetCDFStore.append

    def append(self, record):
        # report each record once it is on disk; then dawdle, so that the parent's kill
        # surely lands before the run ends (this changes no value)
        _append(self, record)
        print(f"records {self.next}", flush=True)
        time.sleep(0.5)

    store.NetCDFStore.append = append
    ds = xlex.cases.warm_bubble(theta_c=5.0, dx=2000.0)
    ds.lex.integrate("5min", dt=20.0, output_every="1min", precision="float64",
                     progress=False, store=sys.argv[1])
    print("finished", flush=True)
""")


@pytest.mark.slow
def test_kill_and_resume_is_bit_for_bit(streamed, tmp_path, torn_child):
    """The acceptance test: SIGKILL a streaming run mid-way, then resume it.

    The child (the run of the ``streamed`` fixture) reports each record on stdout once
    written, and the parent kills it when at least 3 records are complete. The parent
    does not poll the file while the child writes: a reader holding the file open makes
    the writer fail (see test_a_reader_holding_the_store_open_does_not_break_the_run).
    (``torn_child`` is only asked for to start that child beside this one.)
    """
    reference = streamed[1]
    path = tmp_path / "killed.nc"
    seen = 0
    deadline = time.monotonic() + 150
    with child(CHILD, path) as proc:
        while seen < 3:
            left = deadline - time.monotonic()
            assert left > 0, "the child wrote too slowly"
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if not ready:
                continue
            line = proc.stdout.readline()
            assert line, f"the child ended early: {proc.stderr.read()[-3000:]}"
            assert not line.startswith("finished"), "the child finished before the kill"
            seen = int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL

    n = complete_records(path)
    assert seen <= n < 6, n
    with xr.open_dataset(path) as f:
        assert f.attrs["xlex_status"] == "running"
        assert f.sizes["time"] >= n
    killed = open_store(path)
    np.testing.assert_array_equal(killed["time"].values, 60.0 * np.arange(n))
    assert_records_equal(killed, reference.isel(time=slice(0, n)), FIELDS + DERIVED)

    resumed = xlex.resume(path, progress=False)
    assert_records_equal(resumed, reference, FIELDS + DERIVED)
    assert complete_records(path) == 6
    with xr.open_dataset(path) as f:
        assert f.attrs["xlex_status"] == "complete"
        assert_records_equal(f, reference, FIELDS + DERIVED)


def test_a_second_writer_of_a_live_store_is_refused_and_the_first_completes(streamed, ds0,
                                                                           tmp_path,
                                                                           monkeypatch):
    """While a run (another process) streams to a store, resuming it or starting a new
    run over it with overwrite=True is refused with StoreLockedError naming the
    writer's PID, before anything compiles and without touching the store; the first
    run ends complete, bit for bit the reference run. (Two writers used to corrupt
    the store silently: both exited 0.)"""
    from xlex.io.store import StoreLockedError
    reference = streamed[1]
    path = tmp_path / "live.nc"
    with child(CHILD, path) as proc:
        line = ""
        while not line.startswith("records 2"):
            line = proc.stdout.readline()
            assert line, f"the child ended early: {proc.stderr.read()[-3000:]}"
        def never(*args):
            raise AssertionError("the second writer got as far as compiling")

        monkeypatch.setattr(xlex.runner, "compiled_chunk", never)
        for second in (lambda: xlex.resume(path, progress=False),
                       lambda: ds0.lex.integrate("5min", store=path, overwrite=True, **RUN)):
            with pytest.raises(StoreLockedError, match=rf"live\.nc.*process {proc.pid}"):
                second()
        rest = proc.stdout.read()
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-3000:]
        assert rest.strip().endswith("finished")
    assert complete_records(path) == 6
    with xr.open_dataset(path) as f:
        assert f.attrs["xlex_status"] == "complete"
        assert_records_equal(f, reference, FIELDS + DERIVED)


SMAGORINSKY_CHILD = textwrap.dedent("""
    import sys, time
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import xlex
    from xlex.io import store

    for writer in (store.NetCDFStore, store.ZarrStore):
        def append(self, record, _append=writer.append):
            _append(self, record)
            print(f"records {self.next}", flush=True)
            time.sleep(float(sys.argv[2]))  # the parent's kill lands in this pause or the next write

        writer.append = append
    ds = xlex.cases.warm_bubble(theta_c=5.0, dx=2000.0)
    ds.lex.integrate("5min", dt=20.0, output_every="1min", precision="float64",
                     sgs=xlex.Smagorinsky(), progress=False, store=sys.argv[1])
    print("finished", flush=True)
""")


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_a_smagorinsky_float64_run_killed_at_a_random_moment_resumes_bit_for_bit(
        ds0, tmp_path, suffix):
    """The random-kill harness of tests/test_store_kill.py drives the store alone; this is
    the same with the model: a float64 run with Smagorinsky streamed by another process,
    SIGKILLed at a random moment after a random record (in a pause or in the next
    write), read with xlex (complete records only), resumed, and equal bit for bit to
    the uninterrupted run, km and kh included."""
    rng = np.random.default_rng(12 if suffix == ".nc" else 13)
    after, pause = int(rng.integers(1, 5)), float(rng.uniform(0.0, 0.3))
    reference = ds0.lex.integrate("5min", sgs=xlex.Smagorinsky(), **RUN)
    path = tmp_path / f"smag{suffix}"
    with child(SMAGORINSKY_CHILD, path, pause) as proc:
        line = ""
        while not line.startswith(f"records {after + 1}"):
            line = proc.stdout.readline()
            assert line and not line.startswith("finished"), proc.stderr.read()[-3000:]
        time.sleep(rng.uniform(0.0, pause + 0.05))
        os.kill(proc.pid, signal.SIGKILL)
    n = complete_records(path)
    assert after + 1 <= n <= 6
    killed = open_store(path)
    assert killed.sizes["time"] == n
    names = FIELDS + DERIVED + ("km", "kh")
    assert_records_equal(killed, reference.isel(time=slice(0, n)), names)
    resumed = xlex.resume(path, progress=False)
    assert_records_equal(resumed, reference, names)
    assert resumed.attrs["xlex_status"] == "complete"


SELF_KILL = textwrap.dedent("""
    import os, signal, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import numpy
    import xlex
    from xlex.io import store

    class KillingNumpy:
        # NetCDFStore calls np.ones once per create and once per append, just before
        # it sets the record_complete flags: the 5th call is in the 4th append, after
        # every field of record 4 was written, before the flag, the sync and the close
        calls = 0

        def __getattr__(self, name):
            return getattr(numpy, name)

        def ones(self, *args, **kwargs):
            KillingNumpy.calls += 1
            if KillingNumpy.calls == 5:
                os.kill(os.getpid(), signal.SIGKILL)
            return numpy.ones(*args, **kwargs)

    store.np = KillingNumpy()
    ds = xlex.cases.warm_bubble(theta_c=5.0, dx=2000.0)
    ds.lex.integrate("5min", dt=20.0, output_every="1min", precision="float64",
                     progress=False, store=sys.argv[1])
""")


@pytest.fixture(scope="module")
def torn_child(tmp_path_factory):
    """(process, path) of a child run that SIGKILLs itself while writing a record;
    started once, early, so that it runs beside the parent's other work."""
    path = tmp_path_factory.mktemp("torn") / "torn.nc"
    proc = subprocess.Popen([sys.executable, "-c", SELF_KILL, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    yield proc, path
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def test_kill_while_writing_a_record(streamed, torn_child):
    proc, path = torn_child
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL, stderr[-3000:]
    # records 0-3 are whole; record 4 was being written
    assert complete_records(path) == 4
    with xr.open_dataset(path) as f:
        assert f.attrs["xlex_status"] == "running"
    assert_records_equal(open_store(path), streamed[1].isel(time=slice(0, 4)),
                         FIELDS + DERIVED)
    resumed = xlex.resume(path, progress=False)
    assert_records_equal(resumed, streamed[1], FIELDS + DERIVED)
    with xr.open_dataset(path) as f:
        assert f.attrs["xlex_status"] == "complete"


READER = textwrap.dedent("""
    import sys, time
    import xarray as xr
    ds = xr.open_dataset(sys.argv[1])  # e.g. someone watching the run in a notebook
    ds["th"].values
    print("open", flush=True)
    time.sleep(120)
""")


def test_a_reader_holding_the_store_open_does_not_break_the_run(ds0, tmp_path,
                                                                monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(warm_by(1.0)))
    create = NetCDFStore.create
    readers = []

    def create_then_watch(self, first):
        create(self, first)
        reader = subprocess.Popen([sys.executable, "-c", READER, str(self.path)],
                                  stdout=subprocess.PIPE, text=True, env=child_env())
        readers.append(reader)
        assert reader.stdout.readline().strip() == "open"

    monkeypatch.setattr(NetCDFStore, "create", create_then_watch)
    path = tmp_path / "watched.nc"
    try:
        out = ds0.lex.integrate("3min", store=path, **RUN)
    finally:
        for reader in readers:
            reader.kill()
            reader.wait()
            reader.stdout.close()
    assert readers
    assert complete_records(path) == 4
    assert_records_equal(open_store(path), out)


# --------------------------------------------------------------------------- failures


def test_blow_up_in_the_first_interval(ds0, tmp_path, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(
        lambda s: dataclasses.replace(s, th=s.th * jnp.nan)))
    path = tmp_path / "nan.nc"
    with pytest.raises(BlowUpError) as info:
        ds0.lex.integrate("3min", store=path, **RUN)
    err = info.value
    assert err.time == 60.0 and err.variable == "th"
    assert "60 s" in str(err) and "th" in str(err)
    np.testing.assert_array_equal(err.outputs["time"].values, [0.0])
    assert complete_records(path) == 1
    with xr.open_dataset(path) as f:
        assert f.attrs["xlex_status"] == "blew up"
        assert_records_equal(f, err.outputs)


def test_blow_up_after_some_records(ds0, tmp_path, monkeypatch):
    # th warms 1 K a step (3 steps an output) and turns NaN at the 7th step: the
    # outputs at 60 s and 120 s are fine, the interval ending at 180 s is not
    th_min = float(ds0["th"].min())

    def update(s):
        th = s.th + 1.0
        return dataclasses.replace(s, th=jnp.where(jnp.min(th) > th_min + 6.5, jnp.nan, th))

    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(update))
    path = tmp_path / "later_nan.nc"
    with pytest.raises(BlowUpError) as info:
        ds0.lex.integrate("5min", store=path, **RUN)
    err = info.value
    assert err.time == 180.0 and err.variable == "th"
    assert "180 s" in str(err) and "th" in str(err)
    np.testing.assert_array_equal(err.outputs["time"].values, [0.0, 60.0, 120.0])
    assert complete_records(path) == 3
    stored = open_store(path)
    assert stored.attrs["xlex_status"] == "blew up"
    assert_records_equal(stored, err.outputs, FIELDS + DERIVED)
    assert np.isfinite(stored["th"]).all()


def test_a_real_blow_up_keeps_the_records_before_it(tmp_path):
    # a 50 K bubble with 150 s steps: the initial state (at rest) passes the CFL check,
    # the updraft breaks the Courant limit in the interval ending at 600 s
    ds = xlex.cases.warm_bubble(theta_c=50.0, dx=2000.0)
    path = tmp_path / "real.nc"
    with pytest.raises(BlowUpError) as info:
        ds.lex.integrate("40min", dt=150.0, output_every=150.0, precision="float64",
                         progress=False, store=path)
    err = info.value
    assert err.time == 600.0
    assert err.variable in FIELDS
    message = str(err)
    assert "600 s" in message and err.variable in message and "dt" in message
    np.testing.assert_array_equal(err.outputs["time"].values, [0.0, 150.0, 300.0, 450.0])
    assert complete_records(path) == 4
    with xr.open_dataset(path) as f:
        assert f.attrs["xlex_status"] == "blew up"
        assert_records_equal(f, err.outputs, FIELDS + DERIVED)


class _InterruptSecondCall:
    """Stands in for ``jax`` in xlex.runner: the second call of the jitted output-interval
    function raises KeyboardInterrupt (a Ctrl-C during the second interval)."""

    def __getattr__(self, name):
        return getattr(jax, name)

    def jit(self, fn, *args, **kwargs):
        compiled = jax.jit(fn, *args, **kwargs)
        calls = []

        def wrapper(*a, **k):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return compiled(*a, **k)
        return wrapper


def test_ctrl_c_keeps_the_store_and_resume_finishes_it(ds0, tmp_path, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(warm_by(1.0)))
    reference = ds0.lex.integrate("4min", **RUN)
    forget_compiled(monkeypatch)  # the chunk of the reference is not jitted by the stand-in
    monkeypatch.setattr(xlex.runner, "jax", _InterruptSecondCall())
    path = tmp_path / "ctrl_c.nc"
    with pytest.warns(RuntimeWarning, match="interrupted"):
        out = ds0.lex.integrate("4min", store=path, **RUN)
    assert out.attrs["xlex_status"] == "interrupted"
    np.testing.assert_array_equal(out["time"].values, [0.0, 60.0])
    assert complete_records(path) == 2
    with xr.open_dataset(path) as f:
        assert f.attrs["xlex_status"] == "interrupted"
        assert_records_equal(f, out)
    monkeypatch.setattr(xlex.runner, "jax", jax)
    forget_compiled(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = xlex.resume(path, progress=False)
    assert_records_equal(resumed, reference, FIELDS + DERIVED)
    assert resumed.attrs["xlex_status"] == "complete"


# --------------------------------------------------------------------------- the command


# the CLI's default float32 pcg solve stalls above its 1e-5 tolerance on this coarse grid
def test_cli_run_streams_and_resumes(tmp_path):
    f = tmp_path / "cli.nc"
    code, out, err = run_main(["run", "--dx", "2000", "--duration", "2min", "--dt", "20",
                               "-o", str(f), "--no-progress"])
    assert code == 0, err
    assert complete_records(f) == 3
    assert (tmp_path / "cli.png").exists()
    whole = open_store(f)
    assert whole.attrs["xlex_status"] == "complete"
    np.testing.assert_array_equal(whole["time"].values, [0.0, 60.0, 120.0])

    spoil_from(f, 2, garbage=np.nan)
    assert complete_records(f) == 2
    # the figure of the first run is not replaced without --overwrite
    png = (tmp_path / "cli.png").read_bytes()
    code, out, err = run_main(["run", "--resume", str(f), "--no-progress"])
    assert code == 2 and "cli.png" in err and "--overwrite" in err
    assert (tmp_path / "cli.png").read_bytes() == png and complete_records(f) == 2
    code, out, err = run_main(["run", "--resume", str(f), "--no-progress", "--overwrite"])
    assert code == 0, err
    assert str(f) in out
    assert complete_records(f) == 3
    assert_records_equal(open_store(f), whole, FIELDS + DERIVED)
    with xr.open_dataset(f) as reopened:
        assert_records_equal(reopened, whole, FIELDS + DERIVED)
        assert reopened.attrs["xlex_status"] == "complete"
    # --duration with --resume extends the run (it was silently ignored)
    code, out, err = run_main(["run", "--resume", str(f), "--duration", "1min", "--no-progress",
                               "--overwrite"])
    assert code == 0, err
    longer = open_store(f)
    np.testing.assert_array_equal(longer["time"].values, [0.0, 60.0, 120.0, 180.0])
    assert float(longer.attrs["xlex_duration"]) == 180.0


def test_cli_refuses_to_overwrite_a_store(tmp_path):
    f = tmp_path / "kept.nc"
    f.write_bytes(b"kept\n")
    code, out, err = run_main(["run", "--dx", "2000", "--duration", "2min", "--dt", "20",
                               "-o", str(f), "--no-progress"])
    assert code == 2
    assert err.startswith("xlex run: error:") and str(f) in err and "--overwrite" in err
    assert f.read_bytes() == b"kept\n"
    assert not (tmp_path / "kept.png").exists()


def test_cli_output_must_be_netcdf(tmp_path):
    f = tmp_path / "out.txt"
    code, out, err = run_main(["run", "--dx", "2000", "--duration", "2min", "--dt", "20",
                               "-o", str(f), "--no-progress"])
    assert code == 2
    assert "Traceback" not in err and "out.txt" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_resume_of_a_missing_file(tmp_path, capsys):
    code = cli.main(["run", "--resume", str(tmp_path / "missing.nc"), "--no-progress"])
    assert code == 2
    assert "missing.nc" in capsys.readouterr().err
