"""Streaming output: each record is written and flushed as soon as it exists.

A store is a contract Dataset in NetCDF (``.nc``, unlimited ``time`` dim) or
Zarr (``.zarr``). A ``record_complete`` flag is set after all fields of a
record are written, so a run killed mid-write leaves a store whose complete
records are known; the file is closed after every record, so it opens with
``xr.open_dataset`` / ``xr.open_zarr`` at any time.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr

from xlex.core.errors import OptionError, OptionTypeError, XlexError

COMPLETE = "record_complete"
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")


def is_zarr(path) -> bool:
    """Whether ``path`` names a Zarr store."""
    return Path(path).suffix == ".zarr"


def allow_concurrent_reads():
    """Turn HDF5's file locks off for this process (unless the user chose): a
    store is appended to while notebooks read it, and the locks would make
    either side fail. Called where xlex opens a store, never at import."""
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")


def _netcdf4():
    """netCDF4, imported after :func:`allow_concurrent_reads`: HDF5 reads the
    variable once, when the library is loaded."""
    allow_concurrent_reads()
    import netCDF4
    return netCDF4


def make_store(path, start=None):
    """The writer for ``path``: :class:`ZarrStore` for ``.zarr``, else :class:`NetCDFStore`."""
    allow_concurrent_reads()
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
    if path.exists() and overwrite:
        _check_overwritable(path)
    if not path.parent.exists():
        raise OptionError(f"store={str(path)!r}: folder {str(path.parent)!r} does not exist")
    return path


def _is_xlex_zarr(path: Path) -> bool:
    """Whether the directory ``path`` is a Zarr group written by xlex (it has the
    completion flags), so that overwrite may delete it."""
    meta = path / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return (path / COMPLETE).is_dir() and any(k.startswith("xlex_") for k in attrs)


def _check_overwritable(path: Path):
    """Refuse to overwrite anything xlex did not write (issue 15 item 6)."""
    if is_zarr(path):
        if not path.is_dir():
            raise StoreExistsError(f"store {str(path)!r} is a file, not a Zarr store; xlex will "
                                   "not overwrite it. Move it away or choose another path")
        if not _is_xlex_zarr(path):
            raise StoreExistsError(f"{str(path)!r} is a folder that is not an xlex Zarr store; "
                                   "overwrite=True deletes only xlex stores. Move it away or "
                                   "choose another path")
    elif path.is_dir():
        raise StoreExistsError(f"store {str(path)!r} is a folder, not a NetCDF file; xlex will "
                               "not overwrite it. Move it away or choose another path")


def _is_hdf_error(err) -> bool:
    """Whether netCDF4 reported a failure inside HDF5 ("NetCDF: HDF error")."""
    return getattr(err, "errno", None) == -101 or "HDF error" in str(err)


def _io_error(path, err, doing: str) -> XlexError:
    """An XlexError naming the file, the cause and the fix, for an OSError or a
    netCDF/HDF RuntimeError raised while ``doing`` something with ``path``."""
    code = getattr(err, "errno", None)
    if code == errno.ENOSPC or "No space left" in str(err):
        cause = "the disk is full; free space (or write elsewhere) and resume"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS) or isinstance(err, PermissionError):
        cause = "permission denied; write to a folder you may write to"
    elif _is_hdf_error(err):
        cause = ("the file is corrupted or truncated, or still open elsewhere (close every "
                 "Dataset opened on it, e.g. ds.close())")
    else:
        cause = str(err)
    error = StoreError(f"{doing} {str(path)!r} failed: {cause} ({type(err).__name__}: {err})")
    error.hdf = _is_hdf_error(err)  # may pass: a write was under way
    return error


class StoreLockedError(XlexError, BlockingIOError):
    """Another process is writing the store."""


def _lock_path(path) -> Path:
    path = Path(path)
    return path.with_name("." + path.name + ".lock")


@contextmanager
def store_lock(path):
    """Hold the exclusive writer lock of the store at ``path`` for a ``with`` block.

    An ``fcntl`` lock on the sidecar ``.<name>.lock`` next to the store: the
    kernel releases it when the process ends, however it ends, so a stale lock
    file (its writer is dead) never blocks; the file records the holder's PID for
    the message, and is removed when the block ends (under the lock; a writer
    that locked the removed file sees it is gone and locks the new one). Readers
    never take it. Raises :class:`StoreLockedError` naming the store and the PID
    when another writer holds it.
    """
    fd, lock = _acquire(_lock_path(path), path)
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)  # closing releases the flock


def _acquire(lock: Path, path) -> tuple[int, Path]:
    import fcntl
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise _io_error(lock, err, "creating the lock file") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = os.pread(fd, 32, 0).decode().strip() or "unknown"
            except OSError:
                pid = "unknown"
            os.close(fd)
            raise StoreLockedError(
                f"store {str(path)!r} is being written by process {pid}; two writers would "
                "corrupt it. Wait for that run to finish (or stop it), then resume") from None
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(fd).st_ino:  # its holder removed it as we opened it
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd, lock


def check_not_open(path):
    """Raise if the store at ``path`` is still open in this process (e.g. an
    ``xr.open_dataset`` in the same notebook), which makes HDF5 fail with
    OSError -101 when xlex appends. Call it before compiling."""
    path = Path(path)
    if not path.exists() or is_zarr(path):
        return
    target = path.resolve()
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(fd_dir / fd)
        except OSError:  # closed meanwhile
            continue
        if Path(link) == target:
            raise StoreError(f"store {str(path)!r} is still open in this process (e.g. a "
                             "Dataset from xr.open_dataset); close it first (ds.close()) "
                             "so xlex can write to it")


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
        _check_overwritable(self.path) if self.path.exists() else None
        try:
            ds.to_netcdf(tmp, unlimited_dims=["time"], encoding=encoding)
            tmp.replace(self.path)
        except (OSError, RuntimeError) as err:
            tmp.unlink(missing_ok=True)  # never leave a .part behind
            raise _io_error(self.path, err, "writing") from None
        self._written = True

    def __init__(self, path: Path, start=None):
        self.path = Path(path)
        self.next = start
        self._written = False  # no write by this writer has succeeded yet

    def append(self, record: xr.Dataset):
        """Write the records of ``record`` (time-dependent variables only) after the
        last complete one, then mark them complete and flush."""
        try:
            self._write(lambda nc: self._append(nc, record))
        except (OSError, RuntimeError) as err:
            raise _io_error(self.path, err, "appending a record to") from None

    def _write(self, write):
        """Run ``write(nc)`` on the file opened for appending. A writer killed
        inside an HDF5 write can leave a file whose records read but that HDF5
        refuses to open or to extend ("NetCDF: HDF error"). If this writer's first
        write to a file it did not create fails so, the file is rebuilt from its
        complete records (written beside it, then renamed over it) and the write
        tried once more, so the run continues."""
        netcdf4 = _netcdf4()
        try:
            with netcdf4.Dataset(self.path, "a") as nc:
                write(nc)
        except (OSError, RuntimeError) as err:
            if self._written or not _is_hdf_error(err):
                raise
            self._rebuild(err)
            with netcdf4.Dataset(self.path, "a") as nc:
                write(nc)
        self._written = True

    def _rebuild(self, err):
        try:
            records = open_store(self.path)
        except XlexError:
            raise _io_error(self.path, err, "opening for writing") from None
        n = records.sizes["time"]
        warnings.warn(f"{str(self.path)!r} was left damaged by a writer that was stopped while "
                      f"writing it ({err}); its {n} complete records were copied into a fresh "
                      "file, which the run continues", stacklevel=5)
        self.create(records)
        self.next = n if self.next is None else min(self.next, n)

    def _append(self, nc, record):
        n = len(nc.dimensions["time"]) if self.next is None else self.next
        k = record.sizes["time"]
        nc.variables["time"][n:n + k] = record["time"].values
        for name, da in record.data_vars.items():
            if "time" not in da.dims or name not in nc.variables:
                continue
            var = nc.variables[name]
            var[n:n + k] = da.transpose(*var.dimensions).values
        nc.variables[COMPLETE][n:n + k] = np.ones(k, np.int8)
        nc.sync()
        self.next = n + k

    def set_status(self, status: str):
        """Record the run's status in the global attributes."""
        self.set_attrs(xlex_status=status)

    def set_attrs(self, **attrs):
        """Update global attributes (e.g. ``xlex_status``, ``xlex_duration``)."""
        def write(nc):
            for key, value in attrs.items():
                nc.setncattr(key, value)
        try:
            self._write(write)
        except (OSError, RuntimeError) as err:
            raise _io_error(self.path, err, "updating the attributes of") from None


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
        if self.path.exists():
            _check_overwritable(self.path)
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            ds.to_zarr(tmp, mode="w", consolidated=False)
            if self.path.exists():
                shutil.rmtree(self.path)
            tmp.replace(self.path)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _io_error(self.path, err, "writing") from None

    def truncate(self):
        """Cut every time-dependent array back to the complete records (a resumed
        store may hold a half-written one)."""
        import zarr
        group = zarr.open_group(self.path, mode="r+")
        for _, array in group.arrays():
            dims = _dims(array)
            if dims and dims[0] == "time" and array.shape[0] > self.next:
                array.resize((self.next,) + array.shape[1:])
        self._truncated = True

    def append(self, record: xr.Dataset):
        """Append the records of ``record``, then mark them complete.

        Arrays are resized and written directly with zarr, never through
        ``to_zarr``: that rewrote the group attributes key by key on every
        record (a kill in between lost run options, and it made Zarr 3x slower
        than NetCDF). The completion flag is written last, so a kill leaves at
        most a half-written record that readers and resume ignore.
        """
        try:
            self._append(record)
        except OSError as err:
            raise _io_error(self.path, err, "appending a record to") from None

    def _append(self, record):
        import zarr
        if not self._truncated:
            self.truncate()
        group = zarr.open_group(self.path, mode="r+")
        n = self.next if self.next is not None else complete_records(self.path)
        k = record.sizes["time"]
        names = ["time"] + [v for v in record.data_vars
                            if "time" in record[v].dims and v in group and v != COMPLETE]
        for name in names + [COMPLETE]:
            array = group[name]
            if array.shape[0] < n + k:
                array.resize((n + k,) + array.shape[1:])
        for name in names:
            array = group[name]
            dims = _dims(array)
            values = np.asarray(record[name].transpose(*dims).values, dtype=array.dtype)
            array[n:n + k] = values
        group[COMPLETE][n:n + k] = np.ones(k, np.int8)
        self.next = n + k

    def set_status(self, status: str):
        """Record the run's status in the global attributes."""
        self.set_attrs(xlex_status=status)

    def set_attrs(self, **attrs):
        """Update global attributes (e.g. ``xlex_status``, ``xlex_duration``) in
        one atomic write: ``zarr.json`` is rewritten to a temporary file and
        renamed, so a kill leaves the old or the new attributes, never a part."""
        meta = self.path / "zarr.json"
        try:
            doc = json.loads(meta.read_text())
            doc.setdefault("attributes", {}).update(_jsonable(attrs))
            tmp = meta.with_name("zarr.json.part")
            tmp.write_text(json.dumps(doc, indent=2))
            os.replace(tmp, meta)
        except OSError as err:
            raise _io_error(self.path, err, "updating the attributes of") from None


def _jsonable(attrs):
    return {k: (v.item() if isinstance(v, np.generic) else
                v.tolist() if isinstance(v, np.ndarray) else v) for k, v in attrs.items()}


def _dims(array):
    return list(array.attrs.get("_ARRAY_DIMENSIONS") or
                getattr(array.metadata, "dimension_names", None) or [])


def complete_records(path) -> int:
    """Number of leading records of the store whose every field was written."""
    try:
        return _complete_records(path)
    except XlexError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        raise _not_a_store(path, err) from None


def _not_a_store(path, err) -> StoreError:
    import zarr.errors
    if isinstance(err, (KeyError, zarr.errors.GroupNotFoundError)) or (
            isinstance(err, FileNotFoundError) and Path(path).exists()):
        return StoreError(f"{str(path)!r} is not an xlex store (it lacks {err}); give a store "
                          "written by xlex integrate(store=...)")
    return _io_error(path, err, "reading")


def _complete_records(path) -> int:
    allow_concurrent_reads()
    if not Path(path).exists():
        raise StoreError(f"no store at {str(path)!r}; check the path")
    if is_zarr(path):
        import zarr
        group = zarr.open_group(path, mode="r")
        flags = np.asarray(group[COMPLETE][:]) == 1 if COMPLETE in group else None
        if flags is None:
            return int(group["time"].shape[0])
        return int(np.argmin(flags)) if not flags.all() else int(flags.size)
    with _netcdf4().Dataset(path, "r") as nc:
        if COMPLETE not in nc.variables:
            return len(nc.dimensions["time"])
        flags = np.ma.filled(nc.variables[COMPLETE][:], 0) == 1
    return int(np.argmin(flags)) if not flags.all() else int(flags.size)


def _open_zarr_complete(path, n) -> xr.Dataset:
    """The first ``n`` records of a Zarr store, read array by array so that the
    longer arrays of a record being written (which make ``xr.open_zarr`` fail
    with "conflicting sizes for dimension 'time'") are cut to the complete ones."""
    import zarr
    group = zarr.open_group(path, mode="r")
    variables = {}
    for name, array in group.arrays():
        dims = _dims(array)
        attrs = {k: v for k, v in array.attrs.items() if k != "_ARRAY_DIMENSIONS"}
        data = array[:n] if dims and dims[0] == "time" else array[...]
        variables[name] = xr.Variable(dims, np.asarray(data), attrs)
    ds = xr.Dataset(variables, attrs=dict(group.attrs))
    coords = [v for v in ds.variables if v in ds.dims]
    for name in list(ds.data_vars):
        extra = ds[name].attrs.get("coordinates")
        if extra:
            coords += [c for c in extra.split() if c in ds.variables]
    return xr.decode_cf(ds.set_coords(coords))


#: Reads of a live NetCDF store that land inside a write (HDF5 sees a file half
#: updated) are tried again this many times, READ_RETRY_SECONDS apart.
READ_RETRIES = 10
READ_RETRY_SECONDS = 0.2


def open_store(path, *, records=None, load=True) -> xr.Dataset:
    """The complete records of a store (``records``: a slice or list of indices
    among them), safe on a store that a run is still writing.

    Only records whose completion flag is set are returned, for NetCDF and Zarr
    alike: a live Zarr store is read array by array (``xr.open_zarr`` fails on it
    while a record is half written), and a read of a live NetCDF file that
    lands inside a write is tried again (:data:`READ_RETRIES` times). Loaded
    into memory and the file closed (``load=True``), so the store can be
    appended to again. Raises :class:`StoreError` naming the file and the cause
    for a missing, corrupted, truncated or non-xlex store.
    """
    for attempt in range(READ_RETRIES + 1):
        try:
            return _read_store(path, records=records, load=load)
        except StoreError as err:
            if not getattr(err, "hdf", False) or is_zarr(path) or attempt == READ_RETRIES:
                raise
            time.sleep(READ_RETRY_SECONDS)


#: Records per chunk of a lazily read store variable, at most (and at most
#: LAZY_CHUNK_BYTES a chunk).
LAZY_CHUNK_RECORDS = 16
LAZY_CHUNK_BYTES = 64 * 2 ** 20


def open_store_lazily(path) -> xr.Dataset:
    """The complete records of a store with their fields left in the file: each
    variable along ``time`` is a dask array read a chunk of records at a time
    when used. The file is opened for each read and closed after it, so
    nothing holds it open: the store can be resumed or appended to while the
    Dataset is alive (later reads then see the records it had when opened).
    Coordinates, the base state and the attributes are read at once.
    """
    import dask
    import dask.array

    structure = open_store(path, load=False)
    n = structure.sizes.get("time", 0)
    try:
        eager = structure.drop_vars([v for v in structure.data_vars
                                     if "time" in structure[v].dims]).load()
    finally:
        structure.close()
    out = eager
    for name, var in structure.data_vars.items():
        if "time" not in var.dims:
            continue
        shape, dtype = var.shape, var.dtype
        record_bytes = max(1, int(np.prod(shape[1:])) * dtype.itemsize)
        step = max(1, min(LAZY_CHUNK_RECORDS, LAZY_CHUNK_BYTES // record_bytes))
        read = dask.delayed(_read_records, pure=True)
        chunks = [dask.array.from_delayed(read(str(path), name, a, min(a + step, n), dtype),
                                          (min(a + step, n) - a,) + shape[1:], dtype=dtype)
                  for a in range(0, n, step)]
        data = (dask.array.concatenate(chunks) if chunks
                else dask.array.zeros(shape, dtype=dtype))
        out[name] = xr.Variable(var.dims, data, var.attrs, var.encoding)
    return out


def _hdf5_lock():
    """The lock xarray takes around HDF5 calls (one library, one lock)."""
    try:
        from xarray.backends.locks import HDF5_LOCK
    except ImportError:  # pragma: no cover - an xarray without it
        return _OWN_HDF5_LOCK
    return HDF5_LOCK


_OWN_HDF5_LOCK = threading.Lock()


def _read_records(path, name, start, stop, dtype) -> np.ndarray:
    """Records ``start:stop`` of variable ``name`` of a store, the file opened and
    closed for this read (missing values as NaN, as xarray decodes them)."""
    allow_concurrent_reads()
    if is_zarr(path):
        import zarr
        data = zarr.open_group(path, mode="r")[name][start:stop]
    else:  # HDF5 is not thread-safe: dask's threads take xarray's lock for it in turn
        with _hdf5_lock(), _netcdf4().Dataset(path, "r") as nc:
            data = nc.variables[name][start:stop]
    if np.ma.isMaskedArray(data):
        data = np.ma.filled(data, np.nan if np.issubdtype(dtype, np.floating) else 0)
    return np.asarray(data, dtype=dtype)


def _read_store(path, *, records=None, load=True) -> xr.Dataset:
    """The body of :func:`open_store` (one attempt)."""
    allow_concurrent_reads()
    path = Path(path)
    n = complete_records(path)
    try:
        if is_zarr(path):
            ds = _open_zarr_complete(path, n)
        else:
            ds = xr.open_dataset(path)
    except XlexError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        raise _not_a_store(path, err) from None
    ds = ds.isel(time=slice(0, n))
    if COMPLETE in ds:
        ds = ds.drop_vars(COMPLETE)
    if records is not None:
        ds = ds.isel(time=records)
    if load:
        try:
            loaded = ds.load()
        except (OSError, RuntimeError) as err:
            raise _io_error(path, err, "reading") from None
        finally:
            ds.close()
        return loaded
    return ds
