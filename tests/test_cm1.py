"""open_cm1 and the packaged CM1 extract, against the shared CM1 warm-bubble output.

The reader's checks run on the packaged extract, which is always there: it holds
6 of the full run's 21 records with values unchanged, and
``test_extract_agrees_with_the_full_run`` proves that. Tests on the full run
(``full``, the ``cm1_dir`` fixture: skipped where the shared data are absent,
see docs/contributing.md) are kept only where they see more than the extract:
that proof, and the checks that hold at every record (the 15 the extract lacks).
"""

from __future__ import annotations

import warnings
from importlib.resources import files

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from xlex import datasets

from xlex.core import constants
from xlex.core.errors import DatasetError
from xlex.io.cm1 import open_cm1

EXTRACT = files("xlex").joinpath("data", "cm1_bubble_dT5K_dx400m_extract.nc")
EXTRACT_TIMES = [0.0, 60.0, 300.0, 600.0, 900.0, 1200.0]
NX = NY = 60
NZ = 30
DX = 400.0  # m
LX = NX * DX  # m
F32 = float(np.finfo(np.float32).eps)
MAIN = "cm1_bubble_dT5K_dx400m.nc"  # in the cm1_dir fixture's folder
BASE = "cm1_bubble_dT5K_dx400m_initial_basestate.nc"


def _raw(path):
    """A CM1 file as xarray reads it, untouched (km, duplicate faces)."""
    return xr.open_dataset(path, decode_times=False, decode_timedelta=False)


def _raw_copy():
    """The extract in CM1 layout, in memory, without its compression (fast to write)."""
    with _raw(EXTRACT) as raw:
        return raw.load().drop_encoding()


@pytest.fixture(scope="module")
def full(cm1_dir):
    """The full run with the base state from the initial/base-state file, in memory."""
    return open_cm1(cm1_dir / MAIN, basestate=cm1_dir / BASE).load()


@pytest.fixture(scope="module")
def extract():
    return datasets.cm1_warm_bubble()


@pytest.fixture
def cm1(extract):
    """The run the reader's checks read: the packaged extract."""
    return extract


@pytest.fixture(params=["extract", "full"])
def every_record(request):
    """For checks that hold at every record: the extract, and the full run's 21 records."""
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------- grid


def test_coordinates_in_metres_with_periodic_faces(cm1):
    assert cm1["xh"][0] == 200.0 and cm1["yh"][0] == 200.0 and cm1["zh"][0] == 200.0
    assert cm1["xf"][0] == 0.0 and cm1["yf"][0] == 0.0 and cm1["zf"][0] == 0.0
    assert cm1.sizes["xf"] == NX and cm1.sizes["yf"] == NY  # not 61: duplicate face dropped
    assert cm1.sizes["xh"] == NX and cm1.sizes["zh"] == NZ and cm1.sizes["zf"] == NZ + 1
    # exact values: the float32 km noise (7.400001 km) is gone
    np.testing.assert_array_equal(cm1["xf"], DX * np.arange(NX))
    np.testing.assert_array_equal(cm1["xh"], DX * np.arange(NX) + DX / 2)
    np.testing.assert_array_equal(cm1["yf"], cm1["xf"])
    np.testing.assert_array_equal(cm1["zf"], DX * np.arange(NZ + 1))
    np.testing.assert_array_equal(np.diff(cm1["zh"]), 400.0)
    assert cm1["zf"][-1] == 12000.0 and float(cm1["ztop"]) == 12000.0
    for name in ("xh", "xf", "yh", "yf", "zh", "zf"):
        assert cm1[name].dtype == np.float64
        assert cm1[name].attrs["units"] == "m"
    for name in ("xf", "yf", "zf"):
        assert cm1[name].attrs["c_grid_axis_shift"] == -0.5
    assert cm1["time"].dtype == np.float64 and cm1["time"].attrs["units"] == "seconds"


def test_dimension_order(cm1):
    assert cm1["u"].dims == ("time", "zh", "yh", "xf")
    assert cm1["v"].dims == ("time", "zh", "yf", "xh")
    assert cm1["w"].dims == ("time", "zf", "yh", "xh")
    for name in ("th", "qv", "thpert", "qvpert", "pipert", "prspert"):
        assert cm1[name].dims == ("time", "zh", "yh", "xh")
    for name in ("th0", "qv0", "pi0", "rho0", "prs0"):
        assert cm1[name].dims == ("zh",)


def test_w_vanishes_on_the_walls(every_record):
    w = every_record["w"]
    assert np.all(w.isel(zf=0).values == 0.0)
    assert np.all(w.isel(zf=-1).values == 0.0)
    assert float(abs(w).max()) > 30.0  # and not elsewhere


# --------------------------------------------------------------------------- symmetry


def _mirror_centres(a):
    """x -> Lx - x on cell centres: xh index i -> nx - 1 - i."""
    return a[..., ::-1]


def _mirror_faces(a):
    """x -> Lx - x on the periodic west faces: the face at i dx goes to (nx - i) dx,
    i.e. index i -> (nx - i) mod nx (face 0 maps to itself)."""
    return np.roll(a[..., ::-1], 1, axis=-1)


@pytest.mark.parametrize("time", [60.0, 300.0, 600.0, 1200.0])
def test_bubble_symmetry(cm1, time):
    snap = cm1.sel(time=time)
    th = snap["thpert"].values
    tol = 4 * F32 * float(np.abs(snap["th"]).max())  # float32 round-off of th ~ 300 K
    np.testing.assert_allclose(_mirror_centres(th), th, rtol=0, atol=tol)
    np.testing.assert_allclose(th.transpose(0, 2, 1), th, rtol=0, atol=tol)  # x <-> y
    u, v, w = snap["u"].values, snap["v"].values, snap["w"].values
    assert np.abs(u).max() > 1.0
    vtol = 4 * F32 * float(np.abs(u).max())
    np.testing.assert_allclose(_mirror_faces(u), -u, rtol=0, atol=vtol)  # sign flips
    np.testing.assert_allclose(v.transpose(0, 2, 1), u, rtol=0, atol=vtol)  # u <-> v
    np.testing.assert_allclose(_mirror_centres(w), w, rtol=0, atol=vtol)


def test_face_mirror_index_map():
    faces = DX * np.arange(NX)
    np.testing.assert_array_equal(_mirror_faces(faces), (LX - faces) % LX)


# --------------------------------------------------------------------------- metadata


def test_cf_attributes(cm1):
    standard = {"u": "x_wind", "v": "y_wind", "w": "upward_air_velocity",
                "th": "air_potential_temperature", "qv": "humidity_mixing_ratio",
                "pi0": "dimensionless_exner_function", "rho0": "air_density"}
    for name, std in standard.items():
        assert cm1[name].attrs["standard_name"] == std
    units = {"u": "m s-1", "v": "m s-1", "w": "m s-1", "th": "K", "thpert": "K",
             "qv": "kg kg-1", "qvpert": "kg kg-1", "pipert": "1", "prspert": "Pa",
             "th0": "K", "qv0": "kg kg-1", "pi0": "1", "rho0": "kg m-3", "prs0": "Pa"}
    for name, unit in units.items():
        assert cm1[name].attrs["units"] == unit, name
    for name in cm1.variables:
        assert "units" in cm1[name].attrs and "long_name" in cm1[name].attrs, name


def test_global_attributes(cm1):
    assert cm1.attrs["Conventions"] == "CF-1.11"
    assert cm1.attrs["source_model"] == "CM1"
    assert cm1.attrs["source_model_version"] == "cm1r21.1"
    assert "cm1_bubble_dT5K_dx400m" in cm1.attrs["source_files"]
    assert cm1.attrs["nx"] == NX and cm1.attrs["wbc"] == 1  # CM1's options are kept
    assert "x_units" not in cm1.attrs  # CM1's "km" would be wrong now


# --------------------------------------------------------------------------- fields


def test_thpert_is_th_minus_th0(every_record):
    ds = every_record
    diff = ds["th"] - ds["th0"] - ds["thpert"]
    assert float(abs(diff).max()) <= 4 * F32 * 300.0
    assert 4.6 < float(ds["thpert"].isel(time=0).max()) < 4.7  # 0.928 * 5 K


def test_qvpert_vanishes_outside_the_bubble_at_t0(cm1):
    first = cm1.isel(time=0)
    x, y, z = first["xh"], first["yh"], first["zh"]
    radius = np.sqrt(((x - 12e3) / 2e3) ** 2 + ((y - 12e3) / 2e3) ** 2 + ((z - 2e3) / 2e3) ** 2)
    qvpert = first["qvpert"].transpose(*radius.dims)
    assert float(abs(qvpert.where(radius > 1.0)).max()) < 1e-9
    assert float(qvpert.where(radius <= 1.0).max()) > 1e-4  # RH held at 10 % in the warm bubble


def test_pipert_finite_and_consistent_with_prspert(every_record):
    cm1 = every_record
    pipert = cm1["pipert"]
    assert np.isfinite(pipert.values).all()
    assert np.all(pipert.isel(time=0).values == 0.0)  # no initial pressure perturbation
    # linearised: pi' = p' / (cp rho0 thrho0) with thrho0 = th0 (1 + (1/eps - 1) qv0)
    thrho0 = cm1["th0"] * (1 + constants.VIRTUAL * cm1["qv0"])
    linear = cm1["prspert"] / (constants.CP * cm1["rho0"] * thrho0)
    scale = float(abs(pipert).max())
    assert scale > 1e-5
    assert float(abs(pipert - linear).max()) < 1e-2 * scale


def test_base_state_matches_readme(cm1):
    np.testing.assert_array_equal(cm1["th0"], 300.0)
    np.testing.assert_allclose(cm1["prs0"][0], 97743.0, atol=0.5)
    np.testing.assert_allclose(cm1["prs0"][-1], 18356.0, atol=0.5)
    np.testing.assert_allclose(cm1["qv0"][0], 2.07e-3, atol=5e-6)
    np.testing.assert_allclose(cm1["pi0"], (cm1["prs0"] / constants.P0) ** constants.KAPPA,
                               rtol=1e-7)
    expected_rho0 = cm1["prs0"] / (constants.RD * cm1["pi0"] * cm1["th0"]
                                   * (1 + constants.VIRTUAL * cm1["qv0"]))
    np.testing.assert_allclose(cm1["rho0"], expected_rho0, rtol=1e-12)
    assert np.all(np.diff(cm1["rho0"]) < 0)
    # RH = 10 % with Bolton's saturation formula, as the README says
    t = cm1["th0"] * cm1["pi0"]
    es = 611.2 * np.exp(17.67 * (t - 273.15) / (t - 29.65))
    qs = constants.EPS * es / (cm1["prs0"] - es)
    np.testing.assert_allclose(cm1["qv0"] / qs, 0.1, atol=1e-5)


# --------------------------------------------------------------------------- the extract


def test_extract_agrees_with_the_full_run(full, extract):
    assert extract["time"].values.tolist() == EXTRACT_TIMES
    same = full.sel(time=extract["time"])
    for name in extract.data_vars:
        np.testing.assert_array_equal(extract[name].values, same[name].values, err_msg=name)
    for name in extract.coords:
        np.testing.assert_array_equal(extract[name].values, same[name].values, err_msg=name)


def test_extract_is_in_cm1_layout_and_small():
    path = EXTRACT
    assert path.is_file()
    size = len(path.read_bytes())
    assert size < 5.5e6
    raw = _raw(path)
    with raw:
        assert raw.attrs["CM1 version"] == "cm1r21.1"
        assert raw.sizes["xf"] == NX + 1 and raw["xf"].attrs["units"] == "km"
        for name in ("th", "thpert", "qv", "u", "v", "w", "th0", "qv0", "pi0", "prs0"):
            assert raw[name].dtype == np.float32
            assert raw[name].encoding["zlib"] and raw[name].encoding["shuffle"]


# --------------------------------------------------------------------------- lazy / files


def test_chunks_give_lazy_dask_arrays_equal_to_eager(extract):
    lazy = datasets.cm1_warm_bubble(chunks={"time": 1})
    for name in ("u", "v", "w", "th", "qv", "thpert", "qvpert", "pipert"):
        assert isinstance(lazy[name].data, da.Array), name
        assert lazy[name].chunks[0] == (1,) * len(EXTRACT_TIMES)
    xr.testing.assert_identical(lazy.compute(), extract)


def test_chunks_with_a_base_state_file(nobase):
    """A main file and its base-state file, as CM1 writes them, read lazily."""
    eager = open_cm1(nobase, basestate=EXTRACT).load()
    lazy = open_cm1(nobase, basestate=EXTRACT, chunks={"time": 4})
    assert isinstance(lazy["pipert"].data, da.Array)
    sub = lazy.isel(time=[0, 3, 5]).compute()
    xr.testing.assert_identical(sub, eager.isel(time=[0, 3, 5]))


def _write_records(tmp_path, records):
    """Write each (file name, time) of the extract as a single-time CM1 file."""
    raw = _raw_copy()
    paths = []
    for name, time in records:
        path = tmp_path / name
        raw.sel(time=[time]).to_netcdf(path)
        paths.append(path)
    return paths


def test_list_and_glob_of_per_time_files(tmp_path, extract):
    # file names out of time order: the result must be sorted by time
    paths = _write_records(tmp_path, [("cm1out_000001.nc", 600.0), ("cm1out_000002.nc", 300.0)])
    expected = extract.sel(time=[300.0, 600.0])
    for source in (paths, [str(p) for p in paths], str(tmp_path / "cm1out_*.nc")):
        ds = open_cm1(source)
        assert ds["time"].values.tolist() == [300.0, 600.0]
        for name in expected.data_vars:
            np.testing.assert_array_equal(ds[name].values, expected[name].values, err_msg=name)
        assert ds.attrs["source_files"].index("000002") < ds.attrs["source_files"].index("000001")
    lazy = open_cm1(str(tmp_path / "cm1out_*.nc"), chunks={})
    assert isinstance(lazy["u"].data, da.Array)
    np.testing.assert_array_equal(lazy["u"].values, expected["u"].values)


def test_repeated_time_raises(tmp_path):
    paths = _write_records(tmp_path, [("a.nc", 60.0), ("b.nc", 60.0)])
    with pytest.raises(DatasetError, match="repeats"):
        open_cm1(paths)


# --------------------------------------------------------------------------- base state


@pytest.fixture(scope="module")
def nobase(tmp_path_factory):
    """The extract without its base-state fields, like a plain CM1 output file."""
    path = tmp_path_factory.mktemp("cm1") / "nobase.nc"
    _raw_copy().drop_vars(["th0", "qv0", "pi0", "prs0"]).to_netcdf(path)
    return path


def test_without_base_state_warns_and_derives_th0(nobase, extract):
    path = nobase
    with pytest.warns(UserWarning, match="basestate="):
        ds = open_cm1(path)
    np.testing.assert_array_equal(ds["th0"], 300.0)
    np.testing.assert_array_equal(ds["thpert"], extract["thpert"])
    for name in ("qvpert", "pipert", "qv0", "pi0", "rho0"):
        assert name not in ds


def test_basestate_from_a_dataset(nobase, extract):
    path = nobase
    # a contract Dataset (metres, 1-D profiles) ...
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = open_cm1(path, basestate=extract[["th0", "qv0", "pi0", "prs0"]])
    xr.testing.assert_identical(ds.drop_attrs(), extract.drop_attrs())
    # ... or CM1's own (km, 3-D fields), as a Dataset or as a path
    with _raw(EXTRACT) as raw:
        ds = open_cm1(path, basestate=raw)
    np.testing.assert_array_equal(ds["pipert"], extract["pipert"])
    ds = open_cm1(path, basestate=EXTRACT)
    np.testing.assert_array_equal(ds["qvpert"], extract["qvpert"])
    assert ds.attrs["basestate_source"].endswith("cm1_bubble_dT5K_dx400m_extract.nc")


def test_basestate_on_other_levels_raises(nobase, extract):
    path = nobase
    shifted = extract[["th0", "qv0"]].assign_coords(zh=extract["zh"] + 100.0)
    with pytest.raises(DatasetError, match="levels"):
        open_cm1(path, basestate=shifted)


# --------------------------------------------------------------------------- errors


def test_non_cm1_file_raises(tmp_path):
    path = tmp_path / "other.nc"
    xr.Dataset({"temperature": ("x", np.arange(3.0))}, coords={"x": [0, 1, 2]}).to_netcdf(path)
    with pytest.raises(DatasetError, match="output_format=2") as err:
        open_cm1(path)
    for name in ("xh", "xf", "zh", "zf", "th", "u", "v", "w"):
        assert name in str(err.value)


def test_cm1_file_missing_a_field_names_it(tmp_path):
    path = tmp_path / "now.nc"
    _raw_copy().drop_vars("w").to_netcdf(path)
    with pytest.raises(DatasetError, match=r"missing w\b"):
        open_cm1(path)


def test_not_netcdf_raises(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_text("not a NetCDF file\n")
    with pytest.raises(DatasetError, match="CM1 NetCDF output"):
        open_cm1(path)


def test_missing_path_raises(tmp_path):
    missing = tmp_path / "no_such_cm1out.nc"
    with pytest.raises(FileNotFoundError, match="no_such_cm1out.nc"):
        open_cm1(missing)
    with pytest.raises(FileNotFoundError, match="no_such_cm1out.nc"):
        open_cm1([EXTRACT, missing])
    with pytest.raises(FileNotFoundError, match=r"nothing_\*\.nc"):
        open_cm1(str(tmp_path / "nothing_*.nc"))
    with pytest.raises(FileNotFoundError, match="no_base.nc"):
        open_cm1(EXTRACT, basestate=tmp_path / "no_base.nc")


def test_non_periodic_duplicate_face_warns_and_is_dropped(tmp_path):
    path = tmp_path / "broken.nc"
    bad = _raw_copy()
    bad["u"][:, :, :, -1] += 1.0
    bad.to_netcdf(path)
    with pytest.warns(UserWarning, match="last xf face differs"):
        ds = open_cm1(path)
    assert ds.sizes["xf"] == NX
