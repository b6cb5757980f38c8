"""Streaming NetCDF output: each record is written and flushed as soon as it exists.

The file is a normal contract Dataset with an unlimited ``time`` dim. A
``record_complete`` flag is set after all fields of a record are written, so a
run killed mid-write leaves a file whose complete records are known; the file
is closed after every record, so it opens with ``xr.open_dataset`` at any time.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from xlex.errors import OptionError, OptionTypeError, XlexError

COMPLETE = "record_complete"


class StoreExistsError(XlexError, FileExistsError):
    """The output store exists and ``overwrite`` was not given."""


class StoreError(XlexError, FileNotFoundError):
    """A store to resume or read is missing or was not written by xlex."""


def check_target(path, overwrite: bool) -> Path:
    """Refuse an existing store unless ``overwrite``; refuse unknown formats."""
    if not isinstance(path, (str, Path)):
        raise OptionTypeError(f"store must be a path (str or pathlib.Path) ending in .nc, got "
                              f"{type(path).__name__} {path!r}")
    if not isinstance(overwrite, bool):
        raise OptionTypeError(f"overwrite must be True or False, got {overwrite!r}")
    path = Path(path)
    if path.suffix not in (".nc", ".nc4", ".netcdf"):
        raise OptionError(f"store={str(path)!r}: xlex streams NetCDF; give a path ending "
                          "in .nc")
    if path.exists() and not overwrite:
        raise StoreExistsError(f"store {str(path)!r} exists; xlex never overwrites a file "
                               "unless overwrite=True (or resume it with xlex.resume)")
    if not path.parent.exists():
        raise OptionError(f"store={str(path)!r}: folder {str(path.parent)!r} does not exist")
    return path


class NetCDFStore:
    """Append-only writer of contract records to one NetCDF file."""

    def create(self, first: xr.Dataset):
        """Write the first record(s) with all coordinates, base state and attributes."""
        ds = first.copy()
        ds[COMPLETE] = (("time",), np.ones(ds.sizes["time"], np.int8),
                        {"long_name": "1 where every field of the record was written"})
        tmp = self.path.with_name(self.path.name + ".part")
        encoding = {v: {"zlib": True, "complevel": 1} for v in ds.data_vars
                    if "time" in ds[v].dims and ds[v].ndim > 2}
        ds.to_netcdf(tmp, unlimited_dims=["time"], encoding=encoding)
        tmp.replace(self.path)

    def __init__(self, path: Path, start=None):
        self.path = Path(path)
        self.next = start

    def append(self, record: xr.Dataset):
        """Write the records of ``record`` (time-dependent variables only) after the
        last complete one, then mark them complete and flush."""
        with netCDF4.Dataset(self.path, "a") as nc:
            n = len(nc.dimensions["time"]) if self.next is None else self.next
            k = record.sizes["time"]
            nc.variables["time"][n:n + k] = record["time"].values
            for name, da in record.data_vars.items():
                if "time" not in da.dims or name not in nc.variables:
                    continue
                var = nc.variables[name]
                values = da.transpose(*var.dimensions).values
                var[n:n + k] = values
            nc.variables[COMPLETE][n:n + k] = np.ones(k, np.int8)
            nc.sync()
        self.next = n + k

    def set_status(self, status: str):
        """Record the run's status in the global attributes."""
        with netCDF4.Dataset(self.path, "a") as nc:
            nc.setncattr("xlex_status", status)


def complete_records(path) -> int:
    """Number of leading records of the store whose every field was written."""
    with netCDF4.Dataset(path, "r") as nc:
        if COMPLETE not in nc.variables:
            return len(nc.dimensions["time"])
        flags = np.ma.filled(nc.variables[COMPLETE][:], 0) == 1
    return int(np.argmin(flags)) if not flags.all() else int(flags.size)


def open_store(path, *, records=None, load=True) -> xr.Dataset:
    """The complete records of a store (``records``: a slice or list of indices
    among them). Loaded into memory and the file closed (``load=True``), so the
    store can be appended to again."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no store at {str(path)!r}")
    n = complete_records(path)
    ds = xr.open_dataset(path)
    ds = ds.isel(time=slice(0, n))
    if COMPLETE in ds:
        ds = ds.drop_vars(COMPLETE)
    if records is not None:
        ds = ds.isel(time=records)
    if load:
        loaded = ds.load()
        ds.close()
        return loaded
    return ds
