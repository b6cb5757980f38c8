"""Small reference datasets shipped with xlex, opened in the dataset contract."""

from __future__ import annotations

from importlib.resources import as_file, files

import xarray as xr

from xlex.io.cm1 import open_cm1

__all__ = ["cm1_warm_bubble", "packaged_path"]

CM1_WARM_BUBBLE_FILE = "cm1_bubble_dT5K_dx400m_extract.nc"
"""Name of the packaged CM1 extract in ``xlex/data``."""


_PACKAGED = {"cm1-warm-bubble": CM1_WARM_BUBBLE_FILE}


def packaged_path(name: str):
    """Path of the packaged file of dataset ``name`` (``"cm1-warm-bubble"``), as stored.

    Used by ``xlex datasets NAME -o FILE``; the file is in its source's own
    layout (CM1's, for the CM1 extract), to be opened with :func:`xlex.open_cm1`.
    """
    from pathlib import Path
    if name not in _PACKAGED:
        from xlex.core.errors import OptionError
        raise OptionError(f"no packaged dataset {name!r}; choose one of {sorted(_PACKAGED)}")
    path = Path(str(files("xlex").joinpath("data", _PACKAGED[name])))
    if not path.is_file():  # e.g. a zipped install
        from xlex.core.errors import DatasetError
        raise DatasetError(f"the packaged file {path} is missing; reinstall xlex")
    return path


def cm1_warm_bubble(*, chunks=None) -> xr.Dataset:
    """CM1 reference run of the 5 K moist warm bubble on a 400 m grid (packaged extract).

    Real output of CM1 release 21.1 (cm1r21.1, fully compressible,
    Klemp-Wilhelmson time splitting, 5th-order advection with WENO-5 for
    scalars, no subgrid model, water vapour only): a 24 km x 24 km x 12 km
    domain with 400 m spacing (60 x 60 x 30 cells), periodic sides, free-slip
    rigid floor and lid, base state th0 = 300 K at rest with 10 % relative
    humidity and 1000 hPa at the surface, and a bubble
    th' = 5 K cos^2(pi L / 2) (L <= 1) centred at x = y = 12 km, z = 2 km with
    2 km radii, relative humidity held at 10 % inside it. Large time step 2 s.

    The file ``xlex/data/cm1_bubble_dT5K_dx400m_extract.nc`` (about 4.5 MB) is a
    reduced copy, in CM1's own NetCDF layout (km coordinates, duplicate periodic
    faces, CM1 names and attributes), of ``cm1_bubble_dT5K_dx400m.nc`` and its
    ``*_initial_basestate.nc`` from the shared CM1 reference data, made by
    ``xlex/data/make_cm1_extract.py``. It holds, with values unchanged
    (float32):

    * ``th`` [K], ``thpert`` [K], ``qv`` [kg kg-1], ``prspert`` [Pa], ``u``,
      ``v``, ``w`` [m s-1] at t = 0, 60, 300, 600, 900 and 1200 s;
    * the base state ``th0``, ``qv0``, ``pi0``, ``prs0`` of the run's initial
      state.

    It is opened through :func:`xlex.io.cm1.open_cm1`, so the result follows
    the dataset contract: coordinates in metres, 60 x-faces and 60 y-faces
    (periodic), 31 z-faces, plus the derived ``qvpert`` [kg kg-1], ``pipert``
    [1] and base-state profiles ``th0``, ``qv0``, ``pi0``, ``rho0``, ``prs0``
    on ``zh``. For reference: the domain maximum of ``w`` is about 5.9, 23.6,
    31.5, 18.9 and 14.1 m s-1 at 60, 300, 600, 900 and 1200 s.

    Parameters
    ----------
    chunks : int, dict, "auto" or None, optional
        Passed to :func:`xlex.io.cm1.open_cm1`. ``None`` (default) loads the
        whole Dataset into memory (about 25 MB); with chunks it is dask-backed
        and lazy.

    Returns
    -------
    xarray.Dataset
        The run in the xlex dataset contract, 6 output times.

    Examples
    --------
    >>> from xlex import datasets
    >>> cm1 = datasets.cm1_warm_bubble()
    >>> cm1.sizes["xf"], float(cm1.w.sel(time=600.0).max()) > 30.0
    (60, True)
    """
    resource = files("xlex").joinpath("data", CM1_WARM_BUBBLE_FILE)
    with as_file(resource) as path:
        ds = open_cm1(path, chunks=chunks)
        if chunks is None:
            ds = ds.load()
    return ds
