"""Make ``cm1_bubble_dT5K_dx400m_extract.nc``, the CM1 sample shipped with xlex.

Usage (from the repository root; the CM1 folder defaults to ``../shared/data/cm1``
beside the repository, or ``$XLEX_CM1_DATA``)::

    python xlex/data/make_cm1_extract.py [CM1_DIR] [-o OUTPUT]

It reads the shared CM1 (cm1r21.1) output of the 5 K moist warm bubble on the
400 m grid (see ``CM1_DIR/README.md``):

* ``cm1_bubble_dT5K_dx400m.nc`` (21 records, 0 to 1200 s), and
* ``cm1_bubble_dT5K_dx400m_initial_basestate.nc`` (t = 0, with the base state),

and writes a reduced copy in CM1's own layout, so that ``xlex.io.cm1.open_cm1``
reads it exactly like the original:

* the records at ``TIMES`` = 0, 60, 300, 600, 900, 1200 s (the times of the
  README's key numbers) of ``th``, ``thpert``, ``qv``, ``prspert``, ``u``, ``v``
  and ``w``, values copied bit for bit from the main file;
* the base state ``th0``, ``qv0``, ``pi0``, ``prs0`` of the base-state file as
  CM1 writes it with ``output_basestate=1``: horizontally uniform 3-D fields on
  (time, zh, yh, xh), the t = 0 field repeated at every record;
* CM1's coordinates (km, float32, with the periodic duplicate last faces of
  ``xf`` and ``yf``), ``ztop``, the variable attributes and all CM1 global
  attributes, plus a ``comment`` saying what was extracted.

Everything is float32, compressed with zlib level 9 and shuffle (one chunk per
record). The file is about 4.5 MB; the full run's other 15 records and the
``buoyancy`` field are left out to keep it under 5 MB (``buoyancy`` follows from
``thpert`` and ``qv``). The script prints the size it wrote.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import netCDF4
import numpy as np

MAIN = "cm1_bubble_dT5K_dx400m.nc"
BASE = "cm1_bubble_dT5K_dx400m_initial_basestate.nc"
OUTPUT = Path(__file__).resolve().with_name("cm1_bubble_dT5K_dx400m_extract.nc")
TIMES = (0.0, 60.0, 300.0, 600.0, 900.0, 1200.0)  # s
FIELDS = ("th", "thpert", "prspert", "qv", "u", "v", "w")  # from the main file
BASE_FIELDS = ("pi0", "th0", "prs0", "qv0")  # from the base-state file
COORDS = ("ztop", "time", "xh", "xf", "yh", "yf", "zh", "zf")
COMPRESSION = {"zlib": True, "complevel": 9, "shuffle": True}


def default_cm1_dir() -> Path:
    """``$XLEX_CM1_DATA``, else ``shared/data/cm1`` beside the repository."""
    repo = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("XLEX_CM1_DATA", repo.parent / "shared" / "data" / "cm1"))


def make_extract(cm1_dir: Path, output: Path = OUTPUT) -> Path:
    """Write the extract of the CM1 run in ``cm1_dir`` to ``output``; return its path."""
    with netCDF4.Dataset(cm1_dir / MAIN) as main, netCDF4.Dataset(cm1_dir / BASE) as base:
        main.set_auto_maskandscale(False)
        base.set_auto_maskandscale(False)
        times = np.asarray(main["time"][:], dtype=np.float64)
        records = [int(np.flatnonzero(times == t)[0]) for t in TIMES]
        output.unlink(missing_ok=True)
        with netCDF4.Dataset(output, "w", format="NETCDF4_CLASSIC") as out:
            attrs = {k: main.getncattr(k) for k in main.ncattrs()}
            attrs["comment"] = (
                f"xlex extract of {MAIN} (records at t = "
                f"{', '.join(f'{t:g}' for t in TIMES)} s of {', '.join(FIELDS)}) with the base "
                f"state {', '.join(BASE_FIELDS)} of {BASE} repeated at every record; values "
                f"unchanged, recompressed (zlib 9 + shuffle) by xlex/data/make_cm1_extract.py")
            out.setncatts(attrs)
            for name, dim in main.dimensions.items():
                out.createDimension(name, None if dim.isunlimited() else len(dim))
            for name in COORDS:
                src = main[name]
                var = out.createVariable(name, src.dtype, src.dimensions)
                var.setncatts({k: src.getncattr(k) for k in src.ncattrs()})
                var[:] = src[:][records] if name == "time" else src[:]
            for name in FIELDS:
                src = main[name]
                var = _field(out, name, src)
                for k, r in enumerate(records):
                    var[k] = src[r]
            for name in BASE_FIELDS:
                src = base[name]
                var = _field(out, name, src)
                for k in range(len(records)):
                    var[k] = src[0]
    return output


def _field(out, name, src):
    """A (time, z, y, x) float32 variable like ``src``, one compressed chunk per record."""
    chunks = (1, *src.shape[1:])
    var = out.createVariable(name, np.float32, src.dimensions, chunksizes=chunks, **COMPRESSION)
    var.setncatts({k: src.getncattr(k) for k in src.ncattrs()})
    return var


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cm1_dir", nargs="?", type=Path, default=default_cm1_dir(),
                        help="folder of the shared CM1 output (default: %(default)s)")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT,
                        help="file to write (default: %(default)s)")
    args = parser.parse_args(argv)
    path = make_extract(args.cm1_dir, args.output)
    print(f"wrote {path}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
