"""Matplotlib figures from contract Datasets (sections, comparisons, metrics)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from xlex.errors import DatasetError


def _figure(nrows, ncols, panel=(3.2, 2.6)):
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows),
                             squeeze=False, constrained_layout=True)
    return fig, axes


def _section(ds, var, y):
    if var not in ds:
        raise DatasetError(f"variable {var!r} is not in the Dataset; it has "
                           f"{sorted(ds.data_vars)}")
    da = ds[var]
    ydim = "yf" if "yf" in da.dims else "yh"
    if ydim not in da.dims:
        raise DatasetError(f"variable {var!r} has no y dimension to cut an x-z section from")
    yc = ds[ydim].values
    y = 0.5 * (float(ds["yf"].values[0]) + float(ds["yf"].values[-1]) + float(
        ds["yf"].values[1] - ds["yf"].values[0])) if y is None else float(y)
    return da.isel({ydim: int(np.argmin(np.abs(yc - y)))}), y


def _pick_times(ds, times, n=4):
    if "time" not in ds.dims:
        return [None]
    t = ds["time"].values
    if times is None:
        idx = np.unique(np.linspace(0, t.size - 1, min(n, t.size)).round().astype(int))
        return [float(t[i]) for i in idx]
    return [float(v) for v in np.atleast_1d(times)]


def _draw(ax, da, vmin, vmax, cmap, title):
    xdim = "xf" if "xf" in da.dims else "xh"
    zdim = "zf" if "zf" in da.dims else "zh"
    m = ax.pcolormesh(da[xdim].values / 1000.0, da[zdim].values / 1000.0,
                      np.asarray(da.transpose(zdim, xdim).values), vmin=vmin, vmax=vmax,
                      cmap=cmap, shading="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (km)")
    ax.set_ylabel("z (km)")
    return m


def plot_section(ds: xr.Dataset, var: str = "thpert", *, times=None, y=None, cmap="RdBu_r"):
    """x-z sections of ``var`` through ``y`` (default the domain centre) at ``times``
    [s] (default four evenly spread outputs), in a row as in the paper's Figure 2.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sec, y = _section(ds, var, y)
    times = _pick_times(ds, times)
    fig, axes = _figure(1, len(times))
    data = [sec if t is None else sec.sel(time=t, method="nearest") for t in times]
    vmax = max(float(np.nanmax(np.abs(d.values))) for d in data) or 1.0
    for ax, d, t in zip(axes[0], data, times, strict=True):
        m = _draw(ax, d, -vmax, vmax, cmap, f"{var}, t = {t / 60:g} min" if t is not None else var)
    fig.colorbar(m, ax=axes[0].tolist(), label=f"{var} ({ds[var].attrs.get('units', '')})")
    fig.suptitle(f"x-z section at y = {y / 1000:g} km", fontsize=10)
    return fig


def compare(a: xr.Dataset, b: xr.Dataset, var: str = "thpert", times=None, *,
            labels=("xlex", "CM1"), y=None, cmap="RdBu_r"):
    """Two rows of x-z sections: ``a`` on top, ``b`` below, same colour scale.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sa, y = _section(a, var, y)
    sb, _ = _section(b, var, y)
    times = _pick_times(a, times)
    fig, axes = _figure(2, len(times))
    rows = [[s.sel(time=t, method="nearest") for t in times] for s in (sa, sb)]
    vmax = max(float(np.nanmax(np.abs(d.values))) for r in rows for d in r) or 1.0
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        for ax, d, t in zip(axes[r], row, times, strict=True):
            m = _draw(ax, d, -vmax, vmax, cmap, f"{label}: {var}, t = {t / 60:g} min")
    fig.colorbar(m, ax=axes.ravel().tolist(), label=f"{var} ({a[var].attrs.get('units', '')})")
    return fig


def metrics(a: xr.Dataset, b: xr.Dataset, var: str = "thpert", *, label="xlex vs CM1"):
    """Correlation, MSE and MS-SSIM of ``var`` over time (the paper's Figure 3).

    Returns
    -------
    matplotlib.figure.Figure
    """
    values = metric_table(a, b, var)
    fig, axes = _figure(1, 3, panel=(3.4, 2.6))
    t = values["time"].values / 60.0
    for ax, name in zip(axes[0], ("R", "MSE", "MS-SSIM"), strict=True):
        ax.plot(t, values[name].values, marker="o", ms=3, label=label)
        ax.set_xlabel("time (min)")
        ax.set_title(f"{name} of {var}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return fig


def metric_table(a: xr.Dataset, b: xr.Dataset, var: str = "thpert") -> xr.Dataset:
    """R, MSE and MS-SSIM of ``var`` at the times both share, as one Dataset."""
    import warnings

    from xlex import compare as cmp
    r = cmp.correlation(a, b, var)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="MS-SSIM")
            ssim = cmp.ms_ssim(a, b, var).reset_coords(drop=True)
    except DatasetError as err:  # a section smaller than one SSIM window
        warnings.warn(f"MS-SSIM left out: {err}", UserWarning, stacklevel=2)
        ssim = xr.full_like(r, np.nan)
    return xr.Dataset({"R": r, "MSE": cmp.mse(a, b, var), "MS-SSIM": ssim})
