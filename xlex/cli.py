"""The ``xlex`` command: ``xlex run``, ``xlex compare``, ``xlex bench``, ``xlex datasets``.

Every error a user can cause ends the same way: one line
``xlex <command>: error: ...`` on stderr and exit status 2, never a traceback
(set ``XLEX_TRACEBACK=1`` to see one when reporting a bug). Ctrl-C ends with one
line ``xlex <command>: interrupted; ...`` saying what was saved, and exit status
130 (see :mod:`xlex.interrupt`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from xlex import interrupt
from xlex.core.dynamics.pressure import SOLVERS
from xlex.core.errors import XlexError


def _add_run(sub):
    p = sub.add_parser("run", help="run a case and write NetCDF and a PNG of theta'",
                       description="Run a built-in case; writes NetCDF (-o) and a PNG "
                                   "of theta' in the x-z plane through the bubble centre.")
    p.add_argument("case", choices=["warm-bubble"], nargs="?", default="warm-bubble",
                   help="the case to run (warm-bubble)")
    p.add_argument("--resume", metavar="FILE", default=None,
                   help="continue the run streamed to FILE from its last complete record")
    p.add_argument("--theta-c", type=float, default=5.0, help="bubble amplitude [K] (5)")
    p.add_argument("--dx", type=float, default=400.0, help="grid spacing [m] (400)")
    p.add_argument("--dz", type=float, default=None, help="vertical spacing [m] (= dx)")
    p.add_argument("--duration", default=None,
                   help="run length, e.g. 20min (20min); with --resume, how much longer to "
                        "run (default: what remains of the run)")
    p.add_argument("--dt", default="12", help="time step [s] (12)")
    p.add_argument("--output-every", default="1min", help="output interval (1min)")
    p.add_argument("--solver", default="pcg", choices=list(SOLVERS))
    p.add_argument("--precision", default="float32", choices=["float32", "float64"])
    p.add_argument("-o", "--output", default="bubble.nc", help="NetCDF file (bubble.nc)")
    p.add_argument("--png", default=None, help="figure file (the output name with .png)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_compare(sub):
    p = sub.add_parser("compare", help="compare a run with a reference (e.g. CM1 output)",
                       description="Print R, MSE and MS-SSIM over time of a variable of "
                                   "RUN against REFERENCE, and write the figures.")
    p.add_argument("run", help="xlex output NetCDF")
    p.add_argument("reference", help="reference NetCDF: CM1 output or xlex output")
    p.add_argument("--var", default="thpert", help="variable to compare (thpert)")
    p.add_argument("--basestate", default=None, help="CM1 base-state file, if the "
                                                     "reference lacks th0/qv0")
    p.add_argument("--figures", default=None,
                   help="prefix of the figure files (default: the run's name)")


def _add_bench(sub):
    p = sub.add_parser("bench", help="time the step and the pressure solve",
                       description="Warm bubble at a few sizes with each solver: compile "
                                   "seconds, seconds per step, pressure seconds per step, "
                                   "grid-point updates per second, iterations per solve.")
    p.add_argument("--sizes", default=",".join(("48x48x24", "96x96x48", "192x192x96")),
                   help="comma-separated NXxNYxNZ list")
    p.add_argument("--solvers", default=",".join(SOLVERS))
    p.add_argument("--sgs", default="none",
                   help="comma-separated subgrid schemes: none, smagorinsky, dynamic, constant, "
                        "neural (the default network, random weights), neural-paper (the "
                        "paper-sized network) (none)")
    p.add_argument("--precision", default="float32", choices=["float32", "float64"])
    p.add_argument("--steps", type=int, default=5, help="timed steps per case (5)")
    p.add_argument("--json", action="store_true", help="print one JSON list of records")


def _add_datasets(sub):
    p = sub.add_parser("datasets", help="write a packaged reference dataset to a file",
                       description="Write a reference dataset shipped with xlex to a NetCDF "
                                   "file, e.g. the CM1 warm bubble to compare a run with: "
                                   "xlex datasets cm1-warm-bubble -o cm1.nc && "
                                   "xlex compare bubble.nc cm1.nc")
    p.add_argument("name", choices=sorted(DATASETS), help="the dataset (cm1-warm-bubble)")
    p.add_argument("-o", "--output", default=None,
                   help="NetCDF file to write (default: NAME.nc)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")


DATASETS = {"cm1-warm-bubble": "CM1 r21.1, 5 K moist warm bubble, 400 m grid, t = 0, 60, 300, "
                               "600, 900, 1200 s (CM1's own NetCDF layout, base state included)"}


def _refuse_existing(path: Path, overwrite: bool, option: str = "-o"):
    if path.exists() and not overwrite:
        raise XlexError(f"{path} exists; choose another name with {option} or pass --overwrite")


def _readable(path, what: str, directory_ok: bool = False) -> Path:
    """``path`` as a Path if it is an existing file, else a clear error."""
    path = Path(path)
    if directory_ok and path.is_dir():
        return path
    if not path.exists():
        hint = (" (a packaged CM1 reference: xlex datasets cm1-warm-bubble -o cm1.nc)"
                if what == "reference" else "")
        raise XlexError(f"{what} file {path} does not exist{hint}")
    if path.is_dir():
        raise XlexError(f"{what} {path} is a directory, not a NetCDF file")
    return path


def _open_netcdf(path: Path, what: str):
    import xarray as xr
    try:
        return xr.open_dataset(path)
    except Exception as err:  # netCDF4/h5netcdf/scipy each raise their own kinds
        first = str(err).split(". ")[0].splitlines()[0]
        raise XlexError(f"{what} file {path} is not a NetCDF file xlex can read "
                        f"({type(err).__name__}: {first})") from err


def cmd_datasets(args):
    import shutil

    from xlex import datasets
    out = Path(args.output or f"{args.name}.nc")
    _refuse_existing(out, args.overwrite)
    source = datasets.packaged_path(args.name)
    tmp = out.with_name(out.name + ".part")
    shutil.copyfile(source, tmp)
    os.replace(tmp, out)
    print(f"wrote {out}: {DATASETS[args.name]}; compare a run with it: "
          f"xlex compare bubble.nc {out}")
    return 0


def _saved_in(path: Path):
    """The Ctrl-C saver of ``xlex run`` outside the time loop (the runner's own
    saver covers the loop): what ``path`` holds, read from the file."""
    def describe():
        from xlex.io.store import complete_records, open_store
        if not path.exists():
            return "nothing was written"
        n = complete_records(path)
        ds = open_store(path, load=False)
        try:
            status = ds.attrs.get("xlex_status")
            upto = f", the last at t = {float(ds['time'].values[-1]):g} s" if n else ""
        finally:
            ds.close()
        hint = "" if status == "complete" else f"; continue with: xlex run --resume {path}"
        return f"{path} holds {n} complete record(s){upto} (status {status!r}){hint}"
    return describe


def cmd_run(args):
    out_path = Path(args.resume or args.output)
    with interrupt.saving(_saved_in(out_path)):
        return _run_case(args)


def _run_case(args):
    import matplotlib
    matplotlib.use("Agg")
    import xlex
    from xlex import plot
    if args.resume:
        out_path = _readable(args.resume, "--resume", directory_ok=True)  # Zarr is a folder
        if out_path.is_file():
            with _open_netcdf(out_path, "--resume") as probe:
                if "time" not in probe.variables or "xlex_dt" not in probe.attrs:
                    raise XlexError(f"--resume file {out_path} is not a run streamed by xlex "
                                    "(no time axis or no xlex_dt attribute); resume only "
                                    "continues files that `xlex run -o FILE` wrote")
        png_path = Path(args.png) if args.png else out_path.with_suffix(".png")
        _refuse_existing(png_path, args.overwrite, "--png")
        started = time.perf_counter()
        out = xlex.resume(out_path, args.duration, progress=not args.no_progress)
    else:
        out_path = Path(args.output)
        png_path = Path(args.png) if args.png else out_path.with_suffix(".png")
        _refuse_existing(out_path, args.overwrite)
        _refuse_existing(png_path, args.overwrite)
        ds0 = xlex.cases.warm_bubble(theta_c=args.theta_c, dx=args.dx, dz=args.dz)
        dt = float(args.dt) if args.dt.replace(".", "", 1).isdigit() else args.dt
        started = time.perf_counter()
        # streamed record by record: a killed run keeps its outputs (xlex run --resume)
        out = ds0.lex.integrate(args.duration or "20min", dt=dt, output_every=args.output_every,
                                solver=args.solver, precision=args.precision,
                                progress=not args.no_progress, store=out_path,
                                overwrite=args.overwrite)
    # the command's own clock: a resumed run's Dataset is read back from the file,
    # which keeps no wall time ("wall None s")
    wall = time.perf_counter() - started
    if out.attrs.get("xlex_status") == "interrupted":  # a KeyboardInterrupt the handler missed
        print(f"xlex run: interrupted; {_saved_in(out_path)()}", file=sys.stderr)
        return interrupt.EXIT_STATUS
    fig = plot.plot_section(out, "thpert", y=out.attrs.get("case_y_centre"))
    tmp = png_path.with_name(png_path.name + ".part.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, png_path)
    w = out["w"].max(("zf", "yh", "xh"))
    print(f"wrote {out_path} ({out.sizes['time']} outputs to t = {float(out.time[-1]):g} s, "
          f"max w at the end {float(w[-1]):.2f} m/s, wall {wall:.1f} s) and {png_path}")
    return 0


def cmd_compare(args):
    import matplotlib
    matplotlib.use("Agg")
    import xarray as xr

    import xlex
    from xlex import plot

    def load(path, what):
        path = _readable(path, what)
        with _open_netcdf(path, what) as probe:
            is_cm1 = "CM1 version" in probe.attrs
            names = set(probe.variables)
        if is_cm1:
            return xlex.open_cm1(path, basestate=args.basestate)
        if args.var not in names:
            raise XlexError(f"{what} file {path} has no variable {args.var!r}: it is neither "
                            f"xlex output nor CM1 output (variables: "
                            f"{', '.join(sorted(names)[:12])})")
        return xr.open_dataset(path)

    if args.basestate is not None:
        _open_netcdf(_readable(args.basestate, "--basestate"), "--basestate").close()
    run, ref = load(args.run, "run"), load(args.reference, "reference")
    table = plot.metric_table(run, ref, args.var)
    print(f"{'time (s)':>10} {'R':>10} {'MSE':>12} {'MS-SSIM':>10}")
    for i in range(table.sizes["time"]):
        row = table.isel(time=i)
        print(f"{float(row.time):10.0f} {float(row['R']):10.5f} {float(row['MSE']):12.4e} "
              f"{float(row['MS-SSIM']):10.5f}")
    prefix = args.figures or str(Path(args.run).with_suffix(""))
    pick = plot.pick_times(table.time.values, 4)  # shared times, first to last
    plot.compare(run, ref, args.var, pick, labels=("xlex", "reference")).savefig(
        f"{prefix}_{args.var}_sections.png", dpi=110)
    plot.metrics(run, ref, args.var).savefig(f"{prefix}_{args.var}_metrics.png", dpi=110)
    print(f"wrote {prefix}_{args.var}_sections.png and {prefix}_{args.var}_metrics.png")
    return 0


def cmd_bench(args):
    from xlex import bench
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    schemes = [s.strip() for s in args.sgs.split(",") if s.strip()]
    for scheme in schemes:
        bench.check_sgs(scheme)  # a misspelt scheme fails before any compilation
    for s in sizes:
        bench.parse_size(s)

    def report(rec):
        if not args.json:
            print(f"{rec['size']:>12} {rec['sgs']:>11} {rec['solver']:>9} compile "
                  f"{rec['compile_seconds']:7.2f} s"
                  f"  step {rec['seconds_per_step']:8.4f} s  pressure "
                  f"{rec['pressure_seconds_per_step']:8.4f} s/step  "
                  f"{rec['points_per_second']:10.3e} points/s  "
                  f"{rec['pressure_iterations']:6.1f} it/solve"
                  + (f"  network {rec['network_seconds_per_step']:8.4f} s/step"
                     if "network_seconds_per_step" in rec else ""), flush=True)

    records = bench.run(sizes, solvers, precision=args.precision, steps=args.steps,
                        report=report, sgs=schemes)
    if args.json:
        print(json.dumps(records, indent=1))
    return 0


def main(argv=None):
    # before anything slow: Ctrl-C from here on exits 130 with one line (the
    # console script installs it earlier still, from xlex/__init__.py)
    previous = interrupt.install()
    try:
        return _main(argv)
    finally:
        interrupt.uninstall(previous)  # main() called in-process leaves no handler


def _main(argv):
    from xlex import __version__
    parser = argparse.ArgumentParser(prog="xlex", description="xlex: differentiable LES in JAX")
    parser.add_argument("--version", action="version", version=f"xlex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_compare(sub)
    _add_bench(sub)
    _add_datasets(sub)
    args = parser.parse_args(argv)
    interrupt.install(args.command)
    commands = {"run": cmd_run, "compare": cmd_compare, "bench": cmd_bench,
                "datasets": cmd_datasets}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:  # only where the handler could not be installed
        print(f"xlex {args.command}: interrupted", file=sys.stderr)
        return interrupt.EXIT_STATUS
    except XlexError as err:
        print(f"xlex {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # never a traceback for a user; XLEX_TRACEBACK=1 shows it
        if os.environ.get("XLEX_TRACEBACK"):
            raise
        print(f"xlex {args.command}: error: {type(err).__name__}: {err} (if this looks like "
              f"a bug in xlex, rerun with XLEX_TRACEBACK=1 and report the traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
