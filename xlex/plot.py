"""Matplotlib figures from contract Datasets (sections, comparisons, metrics)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from xlex.core.errors import DatasetError


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


def pick_times(t, n=4):
    """Up to about ``n`` of the times ``t``, evenly spread from the first to the last
    (5 of 21 one-minute outputs: 0, 5, 10, 15, 20 min, rather than 0, 7, 13, 20)."""
    t = np.asarray(t, dtype=float)
    if t.size <= n + 1:
        return [float(v) for v in t]
    for k in (n, n + 1, n - 1):  # k panels that fall on outputs evenly
        if k > 1 and (t.size - 1) % (k - 1) == 0:
            return [float(v) for v in t[:: (t.size - 1) // (k - 1)]]
    idx = np.unique(np.linspace(0, t.size - 1, n).round().astype(int))
    return [float(t[i]) for i in idx]


def time_label(seconds) -> str:
    """``t = ...`` for a panel title: whole minutes as "20 min", others as
    "1 min 20 s" or "40 s" (not "1.33333 min")."""
    seconds = float(seconds)
    whole = round(seconds)
    if abs(seconds - whole) > 1e-6:
        return f"t = {seconds:g} s"
    minutes, rest = divmod(int(whole), 60)
    if not rest:
        return f"t = {minutes} min"
    return f"t = {minutes} min {rest} s" if minutes else f"t = {rest} s"


def _pick_times(ds, times, n=4):
    if "time" not in ds.dims:
        return [None]
    if times is None:
        return pick_times(ds["time"].values, n)
    return [float(v) for v in np.atleast_1d(times)]


_SYMBOLS = {"thpert": "θ′", "qvpert": "qv′", "th": "θ", "pipert": "π′"}


def label(da, name=None) -> str:
    """A variable's label from its long name (or symbol) and units, e.g.
    "θ′: potential temperature perturbation (K)"."""
    name = name or da.name
    long = da.attrs.get("long_name", name)
    symbol = _SYMBOLS.get(name)
    text = f"{symbol}: {long}" if symbol else long
    units = da.attrs.get("units")
    return f"{text} ({units})" if units not in (None, "", "1") else text


def _robust_limit(*arrays) -> float:
    """A symmetric colour limit for one panel (or one time): the largest |value|,
    never 0, so every panel shows its own structure in full."""
    values = np.concatenate([np.abs(np.asarray(a, dtype=float)).ravel() for a in arrays])
    values = values[np.isfinite(values)]
    vmax = float(values.max()) if values.size else 0.0
    return vmax if vmax > 0 else 1.0


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
    fig, axes = _figure(1, len(times), panel=(3.2, 3.0))
    data = [sec if t is None else sec.sel(time=t, method="nearest") for t in times]
    symbol = _SYMBOLS.get(var, var)
    for ax, d, t in zip(axes[0], data, times, strict=True):
        vmax = _robust_limit(d.values)  # per panel: a decaying bubble stays visible
        m = _draw(ax, d, -vmax, vmax, cmap,
                  f"{symbol}, {time_label(t)}" if t is not None else symbol)
        fig.colorbar(m, ax=ax, orientation="horizontal", shrink=0.85, pad=0.02,
                     label=ds[var].attrs.get("units", ""))
    fig.suptitle(f"{label(ds[var], var)}, x-z section at y = {y / 1000:g} km "
                 "(colour range per panel)", fontsize=10)
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
    fig, axes = _figure(2, len(times), panel=(3.2, 2.8))
    rows = [[s.sel(time=t, method="nearest") for t in times] for s in (sa, sb)]
    symbol = _SYMBOLS.get(var, var)
    for c, t in enumerate(times):  # one colour range per time, shared by both rows
        vmax = _robust_limit(rows[0][c].values, rows[1][c].values)
        for r, name in enumerate(labels):
            m = _draw(axes[r][c], rows[r][c], -vmax, vmax, cmap,
                      f"{name}: {symbol}, {time_label(t)}")
        fig.colorbar(m, ax=[axes[0][c], axes[1][c]], orientation="horizontal", shrink=0.85,
                     pad=0.02, label=a[var].attrs.get("units", ""))
    fig.suptitle(f"{label(a[var], var)}, x-z section at y = {y / 1000:g} km "
                 "(colour range per time)", fontsize=10)
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
    units = a[var].attrs.get("units", "")
    ylabels = {"R": "R (1)", "MSE": f"MSE ({units}²)" if units not in ("", "1") else "MSE",
               "MS-SSIM": "MS-SSIM (1)"}
    symbol = _SYMBOLS.get(var, var)
    for ax, name in zip(axes[0], ("R", "MSE", "MS-SSIM"), strict=True):
        ax.plot(t, values[name].values, marker="o", ms=3, label=label)
        ax.set_xlabel("time (min)")
        ax.set_ylabel(ylabels[name])
        ax.set_title(f"{name} of {symbol}", fontsize=9)
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
