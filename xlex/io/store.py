"""Streaming output: each record is written and flushed as soon as it exists.

A store is a contract Dataset in NetCDF (``.nc``, unlimited ``time`` dim) or
Zarr (``.zarr``). A ``record_complete`` flag is set after all fields of a
record are written, so a run killed mid-write leaves a store whose complete
records are known; the file is closed after every record, so it opens with
``xr.open_dataset`` / ``xr.open_zarr`` at any time.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from xlex.errors import OptionError, OptionTypeError, XlexError

COMPLETE = "record_complete"
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")


def is_zarr(path) -> bool:
    """Whether ``path`` names a Zarr store."""
    return Path(path).suffix == ".zarr"


def make_store(path, start=None):
    """The writer for ``path``: :class:`ZarrStore` for ``.zarr``, else :class:`NetCDFStore`."""
    return (ZarrStore if is_zarr(path) else NetCDFStore)(path, start)


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
    if path.suffix not in NETCDF_SUFFIXES + (".zarr",):
        raise OptionError(f"store={str(path)!r}: xlex streams NetCDF or Zarr; give a path "
                          "ending in .nc or .zarr")
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


class ZarrStore:
    """Append-only writer of contract records to one Zarr store."""

    def __init__(self, path: Path, start=None):
        self.path = Path(path)
        self.next = start
        self._truncated = start is None

    def create(self, first: xr.Dataset):
        """Write the first record(s) with all coordinates, base state and attributes."""
        import shutil
        ds = first.copy()
        ds[COMPLETE] = (("time",), np.ones(ds.sizes["time"], np.int8),
                        {"long_name": "1 where every field of the record was written"})
        tmp = self.path.with_name(self.path.name + ".part")
        if tmp.exists():
            shutil.rmtree(tmp)
        ds.to_zarr(tmp, mode="w", consolidated=False)
        if self.path.exists():
            shutil.rmtree(self.path)
        tmp.replace(self.path)

    def truncate(self):
        """Cut every time-dependent array back to the complete records (a resumed
        store may hold a half-written one)."""
        import zarr
        group = zarr.open_group(self.path, mode="r+")
        for _, array in group.arrays():
            dims = array.attrs.get("_ARRAY_DIMENSIONS") or list(
                getattr(array.metadata, "dimension_names", None) or [])
            if dims and dims[0] == "time" and array.shape[0] > self.next:
                array.resize((self.next,) + array.shape[1:])
        self._truncated = True

    def append(self, record: xr.Dataset):
        """Append the records of ``record``, then mark them complete."""
        import zarr
        if not self._truncated:
            self.truncate()
        keep = [v for v in record.data_vars if "time" in record[v].dims]
        rec = record[keep].copy()
        rec[COMPLETE] = (("time",), np.zeros(rec.sizes["time"], np.int8))
        attrs = dict(zarr.open_group(self.path, mode="r").attrs)
        rec.to_zarr(self.path, append_dim="time", consolidated=False)
        group = zarr.open_group(self.path, mode="r+")
        group.attrs.clear()
        group.attrs.update(attrs)  # the store keeps the attributes it was created with
        n = group[COMPLETE].shape[0] - rec.sizes["time"]
        group[COMPLETE][n:] = 1
        self.next = n + rec.sizes["time"]

    def set_status(self, status: str):
        """Record the run's status in the global attributes."""
        import zarr
        zarr.open_group(self.path, mode="r+").attrs["xlex_status"] = status


def complete_records(path) -> int:
    """Number of leading records of the store whose every field was written."""
    if is_zarr(path):
        import zarr
        group = zarr.open_group(path, mode="r")
        flags = np.asarray(group[COMPLETE][:]) == 1 if COMPLETE in group else None
        if flags is None:
            return int(group["time"].shape[0])
        return int(np.argmin(flags)) if not flags.all() else int(flags.size)
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
    if is_zarr(path):
        try:
            ds = xr.open_zarr(path, consolidated=False, chunks=None)
        except ValueError as err:  # arrays of a half-written record are longer
            raise StoreError(f"{str(path)!r} holds a half-written record ({err}); "
                             "xlex.resume(path) cuts it off and continues the run") from None
    else:
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
