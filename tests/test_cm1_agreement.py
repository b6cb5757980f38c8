"""Acceptance test: xlex agrees with CM1 on the 5 K moist warm bubble (400 m, 20 min).

xlex runs the CM1 reference case (theta_c = 5 K, 400 m grid, 60 x 60 x 30
cells, dt = 12 s, no SGS model, float64) for 20 minutes with one output a
minute, and is compared with real CM1 output of the same case:

* ``full``: the shared CM1 run (21 records, 0 to 1200 s) read with
  ``xlex.open_cm1`` (skipped where the shared data are absent: the extract
  lacks 15 of the 21 records; docs/contributing.md says where the data live);
* ``extract``: the packaged extract ``xlex.datasets.cm1_warm_bubble()``
  (t = 0, 60, 300, 600, 900, 1200 s), always available, so CI checks the
  agreement even without the shared data.

Both are compared at every common output time up to 20 min (all 21 CM1
records of the full run).

* **To 10 min** the thresholds are those of the acceptance criteria; do not
  loosen them: a failure here is a regression of the dynamical core (or of
  the reader / diagnostics).
* **From 10 to 20 min** (the thermal reaches the lid near 12 km and spreads
  sideways, and the agreement falls off) the thresholds were set from the
  numbers measured with this test (float64; the table is in
  docs/validation.md), with a margin below them: R(thpert) >= 0.98 (measured
  minimum 0.9885, at 19 min), R(qvpert) >= 0.99 (measured 0.9935, at 20 min),
  MS-SSIM and SSIM of the centre section >= 0.99 (measured 0.9970 and 0.9957),
  max w within 4 % of CM1's at every time (measured at most 2.6 %, -2.58 % at
  20 min), and the theta' centroid within 100 m of CM1's (measured at most
  45 m). Do not loosen these either without saying why in docs/validation.md.
* **At every time** xlex's qv is >= 0 everywhere (the positive-definite
  moisture advection; measured minimum +1.9e-8 kg/kg).

``pytest -s`` prints the table of measured numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xlex
from xlex import diagnostics

pytestmark = pytest.mark.slow

THETA_C = 5.0  # K
DX = 400.0  # m
DT = 12.0  # s
DURATION = "20min"
END = 1200.0  # s, last compared time
TEN_MIN = 600.0  # s, end of the acceptance criteria's window
FIVE_MIN = 300.0  # s
CM1_MAIN_NAME = "cm1_bubble_dT5K_dx400m.nc"
CM1_BASE_NAME = "cm1_bubble_dT5K_dx400m_initial_basestate.nc"

# Acceptance thresholds (to 10 min).
R_THPERT_5MIN = 0.999
R_THPERT_ALL = 0.98
R_QVPERT_ALL = 0.985
SSIM_ALL = 0.99
W_REL_TOL = 0.03  # max w vs CM1's at 5 and 10 min
W_5MIN_EXPECTED = 23.6  # m s-1, CM1's domain max of w at 300 s (README)
W_5MIN_REL_TOL = 0.25
CENTROID_5MIN_MIN = 3500.0  # m

# From 10 to 20 min: set from the measured numbers (float64), with a margin below
# them (the measured worst case in brackets; the module docstring says more).
LATE_R_THPERT = 0.98  # (0.98854 at 1140 s)
LATE_R_QVPERT = 0.99  # (0.99352 at 1200 s)
LATE_SSIM = 0.99  # MS-SSIM (0.99696 at 1200 s) and SSIM (0.99573 at 1200 s)
LATE_W_REL_TOL = 0.04  # max w vs CM1's at every time (-2.58 % at 1200 s)
LATE_CENTROID_TOL = 100.0  # m, |z_c xlex - z_c CM1| (45 m at 780 and 840 s)

MS_SSIM_FALLBACK = r"fits only 2 of 5 scales"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def xlex_run():
    """xlex, 20 min of the CM1 case in float64, one output a minute (~40-60 s on 2 cores)."""
    ds0 = xlex.cases.warm_bubble(theta_c=THETA_C, dx=DX)
    out = ds0.lex.integrate(DURATION, dt=DT, output_every="1min", precision="float64",
                            progress=False)
    assert out.attrs["xlex_status"] == "complete"
    return out


@pytest.fixture(scope="module")
def full(cm1_dir):
    """The full shared CM1 run with its base state (skips without the shared data)."""
    return xlex.open_cm1(cm1_dir / CM1_MAIN_NAME, basestate=cm1_dir / CM1_BASE_NAME).load()


@pytest.fixture(scope="module")
def extract():
    """The packaged CM1 extract (always available)."""
    return xlex.datasets.cm1_warm_bubble()


def _centroid(ds: xr.Dataset) -> xr.DataArray:
    """Height [m] of the centroid of positive thpert (weights max(thpert, 0)), per time."""
    weight = ds["thpert"].clip(min=0.0)
    return (weight * ds["zh"]).sum(("zh", "yh", "xh")) / weight.sum(("zh", "yh", "xh"))


def _max_w(ds: xr.Dataset) -> xr.DataArray:
    return ds["w"].max(("zf", "yh", "xh"))


def _measure(out: xr.Dataset, cm1: xr.Dataset, source: str) -> xr.Dataset:
    """Every number the assertions use, at the output times both share up to 20 min."""
    out = out.sel(time=slice(None, END))
    times = np.intersect1d(out["time"].values, cm1["time"].values)
    assert times.size >= 4, f"too few common times with the CM1 {source} data: {times}"
    out = out.sel(time=times)
    cm1 = cm1.sel(time=times)

    with pytest.warns(UserWarning, match=MS_SSIM_FALLBACK):
        msssim = out.lex.ms_ssim(cm1, "thpert", plane="xz")
    assert msssim.attrs["scales"] == 2

    # Single-scale SSIM on the same x-z section (the one ms_ssim picked through the
    # centre), with the same data range (the reference's range over the section).
    y_section = float(msssim["yh"])
    sec_a = out["thpert"].sel(yh=y_section).transpose("time", "zh", "xh").values
    sec_b = cm1["thpert"].sel(yh=y_section).transpose("time", "zh", "xh").values
    ssim1 = np.asarray(diagnostics.ssim(sec_a, sec_b, axes=(-2, -1)))

    table = xr.Dataset(
        {
            "R_thpert": out.lex.correlation(cm1, "thpert"),
            "R_qvpert": out.lex.correlation(cm1, "qvpert"),
            "MSE_thpert": out.lex.mse(cm1, "thpert"),
            "MS-SSIM": msssim.reset_coords(drop=True),
            "SSIM": ("time", ssim1),
            "wmax_xlex": _max_w(out),
            "wmax_cm1": _max_w(cm1).astype(np.float64),
            "zc_xlex": _centroid(out),
            "zc_cm1": _centroid(cm1).astype(np.float64),
        },
        coords={"time": times},
        attrs={"source": source, "section_y": y_section},
    )
    table["wmax_rel_diff"] = (table["wmax_xlex"] - table["wmax_cm1"]) / table["wmax_cm1"]
    _print_table(table)
    return table


def _print_table(t: xr.Dataset) -> None:
    print(f"\nxlex (5 K, 400 m, dt = {DT:g} s, float64) vs CM1 ({t.attrs['source']}); "
          f"x-z section at y = {t.attrs['section_y']:g} m, MS-SSIM on 2 scales")
    head = (f"{'t (s)':>6} {'R thpert':>9} {'R qvpert':>9} {'MSE thp':>9} {'MS-SSIM':>8} "
            f"{'SSIM':>8} {'wmax xlex':>9} {'wmax CM1':>9} {'dw/w':>7} "
            f"{'zc xlex':>8} {'zc CM1':>8}")
    print(head)
    for i in range(t.sizes["time"]):
        r = t.isel(time=i)
        dw = float(r["wmax_rel_diff"])
        print(f"{float(r.time):6.0f} {float(r.R_thpert):9.5f} {float(r.R_qvpert):9.5f} "
              f"{float(r.MSE_thpert):9.2e} {float(r['MS-SSIM']):8.5f} {float(r.SSIM):8.5f} "
              f"{float(r.wmax_xlex):9.3f} {float(r.wmax_cm1):9.3f} "
              f"{(f'{100 * dw:+6.2f}%' if np.isfinite(dw) else '    -  '):>7} "
              f"{float(r.zc_xlex):8.0f} {float(r.zc_cm1):8.0f}")


@pytest.fixture(scope="module", params=["full", "extract"])
def measured(request, xlex_run):
    """The measured numbers against each CM1 source (computed once per source)."""
    cm1 = request.getfixturevalue(request.param)
    return _measure(xlex_run, cm1, request.param)


# --------------------------------------------------------------------------- tests


def _early(table: xr.Dataset) -> xr.Dataset:
    """The rows to 10 min (the acceptance criteria's window)."""
    return table.sel(time=slice(None, TEN_MIN))


def _late(table: xr.Dataset) -> xr.Dataset:
    """The rows after 10 min, to 20 min."""
    return table.sel(time=slice(TEN_MIN + 1.0, END))


def _all_at_least(values: xr.DataArray, threshold: float, what: str) -> None:
    bad = values.where(~(values >= threshold), drop=True)
    assert bad.size == 0, f"{what} < {threshold} at t = {bad.time.values} s: {bad.values}"


def test_compared_times(measured):
    """Every CM1 output time to 20 min is compared (all 21 for the full run)."""
    times = measured["time"].values
    expected = (np.arange(0.0, END + 1.0, 60.0) if measured.attrs["source"] == "full"
                else np.array([0.0, 60.0, FIVE_MIN, TEN_MIN, 900.0, END]))
    np.testing.assert_array_equal(times, expected)


def test_water_vapour_stays_positive(xlex_run):
    """qv >= 0 everywhere at every output time to 20 min (positive-definite advection)."""
    np.testing.assert_array_equal(xlex_run["time"].values, np.arange(0.0, END + 1.0, 60.0))
    qv = xlex_run["qv"]
    negative = int((qv < 0.0).sum())
    assert negative == 0 and bool(np.isfinite(qv).all()), (
        f"qv < 0 in {negative} cells (min {float(qv.min()):.3e} kg/kg; by time: "
        f"{qv.min(('zh', 'yh', 'xh')).values})")


def test_thpert_correlation_at_5_min(measured):
    r = float(measured["R_thpert"].sel(time=FIVE_MIN))
    assert r >= R_THPERT_5MIN, f"R(thpert) at 5 min = {r:.5f} < {R_THPERT_5MIN}"


def test_thpert_correlation_to_10_min(measured):
    _all_at_least(_early(measured)["R_thpert"], R_THPERT_ALL, "R(thpert)")


def test_qvpert_correlation_to_10_min(measured):
    _all_at_least(_early(measured)["R_qvpert"], R_QVPERT_ALL, "R(qvpert)")


def test_ms_ssim_of_centre_section_to_10_min(measured):
    _all_at_least(_early(measured)["MS-SSIM"], SSIM_ALL, "MS-SSIM(thpert)")


def test_single_scale_ssim_of_centre_section_to_10_min(measured):
    _all_at_least(_early(measured)["SSIM"], SSIM_ALL, "SSIM(thpert)")


@pytest.mark.parametrize("t", [FIVE_MIN, TEN_MIN])
def test_max_w_matches_cm1(measured, t):
    row = measured.sel(time=t)
    rel = float(row["wmax_rel_diff"])
    assert abs(rel) <= W_REL_TOL, (
        f"max w at {t:g} s: xlex {float(row.wmax_xlex):.3f} m/s, CM1 "
        f"{float(row.wmax_cm1):.3f} m/s ({100 * rel:+.2f} %, tolerance {100 * W_REL_TOL:g} %)")


def test_bubble_rises(measured):
    """The thermal accelerates and rises: max w and the theta' centroid at 5 min."""
    row = measured.sel(time=FIVE_MIN)
    w = float(row["wmax_xlex"])
    assert abs(w - W_5MIN_EXPECTED) <= W_5MIN_REL_TOL * W_5MIN_EXPECTED, (
        f"max w at 5 min = {w:.2f} m/s, expected {W_5MIN_EXPECTED} m/s +- "
        f"{100 * W_5MIN_REL_TOL:g} %")
    zc = float(row["zc_xlex"])
    assert zc > CENTROID_5MIN_MIN, f"theta' centroid at 5 min = {zc:.0f} m <= {CENTROID_5MIN_MIN}"
    # The centroid starts at the bubble centre (2 km) and rises monotonically to 10 min.
    zc_all = _early(measured)["zc_xlex"].values
    assert abs(zc_all[0] - 2000.0) < 100.0
    assert np.all(np.diff(zc_all) > 0.0)


def test_correlations_10_to_20_min(measured):
    """R(thpert) and R(qvpert) after the thermal reaches the lid (measured thresholds)."""
    late = _late(measured)
    assert late.sizes["time"] >= 2
    _all_at_least(late["R_thpert"], LATE_R_THPERT, "R(thpert)")
    _all_at_least(late["R_qvpert"], LATE_R_QVPERT, "R(qvpert)")


def test_ssim_of_centre_section_10_to_20_min(measured):
    late = _late(measured)
    _all_at_least(late["MS-SSIM"], LATE_SSIM, "MS-SSIM(thpert)")
    _all_at_least(late["SSIM"], LATE_SSIM, "SSIM(thpert)")


def test_max_w_and_centroid_10_to_20_min(measured):
    """max w within 4 % and the theta' centroid within 100 m of CM1's at every time."""
    late = _late(measured)
    rel = late["wmax_rel_diff"]
    bad = rel.where(~(abs(rel) <= LATE_W_REL_TOL), drop=True)
    assert bad.size == 0, (
        f"max w differs from CM1's by more than {100 * LATE_W_REL_TOL:g} % at t = "
        f"{bad.time.values} s: {100 * bad.values} %")
    dz = late["zc_xlex"] - late["zc_cm1"]
    bad = dz.where(~(abs(dz) <= LATE_CENTROID_TOL), drop=True)
    assert bad.size == 0, (
        f"theta' centroid differs from CM1's by more than {LATE_CENTROID_TOL:g} m at t = "
        f"{bad.time.values} s: {bad.values} m")
