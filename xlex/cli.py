"""The ``xlex`` command: ``xlex run``, ``xlex compare``, ``xlex bench``, ``xlex train``,
``xlex datasets``.

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
from xlex.core.errors import BlowUpError, XlexError


def _add_run(sub):
    p = sub.add_parser("run", help="run a case and write NetCDF and a PNG of theta'",
                       description="Run a built-in case; writes NetCDF (-o) and a PNG "
                                   "of theta' in the x-z plane through the bubble centre.")
    p.add_argument("case", choices=["warm-bubble"], nargs="?", default="warm-bubble",
                   help="the case to run (warm-bubble)")
    p.add_argument("--resume", metavar="FILE", default=None,
                   help="continue the run streamed to FILE from its last complete record")
    p.add_argument("--theta-c", type=float, default=5.0, help="bubble amplitude [K] (5)")
    p.add_argument("--dx", type=float, default=None, help="grid spacing [m] (400)")
    p.add_argument("--dz", type=float, default=None, help="vertical spacing [m] (= dx)")
    p.add_argument("--duration", default=None,
                   help="run length, e.g. 20min (20min); with --resume, how much longer to "
                        "run (default: what remains of the run)")
    p.add_argument("--dt", default=None,
                   help="time step [s] (12; with a model from `xlex train`, its training step)")
    p.add_argument("--output-every", default="1min", help="output interval (1min)")
    p.add_argument("--solver", default="pcg", choices=list(SOLVERS))
    p.add_argument("--precision", default="float32", choices=["float32", "float64"])
    p.add_argument("--devices", type=int, default=None, metavar="N",
                   help="split the domain over N devices along y (1)")
    p.add_argument("--sgs", default=None, metavar="SCHEME",
                   help="subgrid scheme: none, smagorinsky, dynamic, or a trained neural "
                        "model (a model.nn file, or the folder `xlex train -o` wrote; the run "
                        "then takes the model's grid and time step) (none)")
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
    from xlex import bench
    p = sub.add_parser("bench", help="time the step, the pressure solve and training steps",
                       description="Warm bubble at a few sizes with each solver and subgrid "
                                   "scheme: seconds compiling and running, seconds per step, "
                                   "pressure seconds per step, grid-point updates per second, "
                                   "iterations per solve.")
    bench.add_arguments(p)


def _add_train(sub):
    p = sub.add_parser(
        "train", help="train a neural subgrid model online through the solver",
        description="Coarse-grain truth runs (the NetCDF or Zarr stores `xlex run -o` or "
                    "integrate(store=...) wrote, on the fine grid) into look-ahead windows, "
                    "train a neural subgrid model on them by differentiating through the "
                    "coarse model (the paper's online training), and write DIR/model.nn, "
                    "DIR/history.nc and DIR/training.json. The same command again resumes "
                    "from the last checkpoint in DIR. Then: xlex run --sgs DIR.")
    p.add_argument("truth", nargs="*", help="truth run stores (fine grid), e.g. truth_*.nc")
    p.add_argument("-o", "--output", default=None,
                   help="folder for checkpoints and the model (model/; with --paper, paper/)")
    p.add_argument("--factors", default="6,6,3",
                   help="coarse-graining factors in x, y, z (6,6,3: 100 m to 600 x 600 x 300 m)")
    p.add_argument("--every", type=int, default=1,
                   help="keep every N-th output; the coarse model step is N output intervals (1)")
    p.add_argument("--steps", type=int, default=None,
                   help="look-ahead targets per window (the longest --lookahead)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="fraction of the windows kept for testing (0.1)")
    p.add_argument("--lookahead", default="3,6,12",
                   help="look-ahead steps of each curriculum stage (3,6,12)")
    p.add_argument("--epochs", default="1",
                   help="epochs of each stage: one number, or one per stage (1)")
    p.add_argument("--batch-size", type=int, default=1, help="windows per Adam step (1)")
    p.add_argument("--learning-rate", default="1e-3,1e-6",
                   help="initial and final learning rate, decaying exponentially (1e-3,1e-6)")
    p.add_argument("--preset", default="default", choices=["default", "paper"],
                   help="network size: default (74,005 weights) or paper (7,172,309)")
    p.add_argument("--precision", default="float64", choices=["float32", "float64"],
                   help="arithmetic of the training (float64, as the paper)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, the test split and the window order (0)")
    p.add_argument("--level-floor", type=float, default=None, metavar="F",
                   help="floor of each level's range in the loss scale of eq. 25, a fraction "
                        "of the field's range over all levels (0.1; 0: the paper's equation)")
    p.add_argument("--paper", action="store_true",
                   help="the paper's whole experiment instead (python -m xlex.ml.paper): "
                        "six 100 m truth runs, data, the paper network; for a GPU")
    p.add_argument("--smoke", action="store_true",
                   help="with --paper: the same pipeline at a size a CPU runs in minutes")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


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
        try:
            return _run_case(args)
        except BlowUpError as err:  # the runner's message points at .outputs, a Python thing
            print(f"xlex run: error: {_blew_up(err, out_path)}", file=sys.stderr)
            return 2


def _blew_up(err, path: Path) -> str:
    """What ``xlex run`` says of a blow-up: what went wrong and where (the
    runner's words), what the store holds, and that only a smaller dt helps
    (resuming would run into the same blow-up)."""
    from xlex.io.store import complete_records
    what = str(err).split("; reduce dt")[0]
    dt = err.outputs.attrs.get("xlex_dt") if err.outputs is not None else None
    try:
        n = complete_records(path) if path.exists() else 0
    except XlexError:
        n = 0
    held = (f"{path} holds the {n} complete record(s) before it, marked 'blew up'"
            if n else f"nothing was kept in {path}")
    smaller = f" (now {dt:g} s), e.g. --dt {dt / 2:g}" if dt else ""
    return (f"{what}. {held}. Resuming it would blow up again: rerun with a smaller "
            f"dt{smaller} and --overwrite")


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
        out = xlex.resume(out_path, args.duration, progress=not args.no_progress,
                          devices=args.devices)
    else:
        out_path = Path(args.output)
        png_path = Path(args.png) if args.png else out_path.with_suffix(".png")
        _refuse_existing(out_path, args.overwrite)
        _refuse_existing(png_path, args.overwrite)
        sgs, grid, model_dt = _subgrid_scheme(args.sgs)
        ds0 = xlex.cases.warm_bubble(theta_c=args.theta_c, **_bubble_grid(args, grid))
        dt = args.dt if args.dt is not None else model_dt or "12"
        dt = float(dt) if dt.replace(".", "", 1).isdigit() else dt
        options = {} if sgs is None else {"sgs": sgs}
        started = time.perf_counter()
        # streamed record by record: a killed run keeps its outputs (xlex run --resume)
        out = ds0.lex.integrate(args.duration or "20min", dt=dt, output_every=args.output_every,
                                solver=args.solver, precision=args.precision,
                                progress=not args.no_progress, store=out_path,
                                overwrite=args.overwrite, devices=args.devices, **options)
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


#: Subgrid schemes ``xlex run --sgs`` knows by name (anything else is a model path).
SGS_NAMES = ("none", "smagorinsky", "dynamic")


def _subgrid_scheme(value):
    """``(sgs, grid, dt)`` for ``xlex run --sgs VALUE``: a scheme name (no grid, no
    step), or a neural model (a .nn file, or a folder holding ``model.nn``) with
    its grid, and its training step when ``xlex train`` recorded one."""
    if value is None or value in SGS_NAMES:
        return value, None, None
    path = Path(value)
    if not path.exists():
        raise XlexError(f"--sgs {value}: not a scheme ({', '.join(SGS_NAMES)}) and no such "
                        "file or folder; give a model from `xlex train -o DIR` (DIR or "
                        "DIR/model.nn)")
    from xlex.ml.neural_sgs import NeuralSGS
    from xlex.ml.training import MODEL_FILE
    folder = path if path.is_dir() else None
    if folder is not None:
        path = folder / MODEL_FILE
        if not path.is_file():
            raise XlexError(f"--sgs {value}: the folder holds no {MODEL_FILE}; an unfinished "
                            f"training resumes with the same `xlex train ... -o {value}`")
    model = NeuralSGS.load(path)
    settings = folder / TRAINING_RECORD if folder is not None else None
    dt = None
    if settings is not None and settings.is_file():
        dt = f"{json.loads(settings.read_text())['dt']:g}"
    return model, model.grid, dt


def _bubble_grid(args, grid) -> dict:
    """The spacing (and, for a model, the domain) of the bubble of ``xlex run``."""
    if grid is None:
        return {"dx": 400.0 if args.dx is None else args.dx, "dz": args.dz}
    given = {"--dx": (args.dx, grid.dx), "--dz": (args.dz, grid.dz)}
    for option, (value, wanted) in given.items():
        if value is not None and value != wanted:
            raise XlexError(
                f"{option} {value:g} differs from the model's grid ({grid.nx} x {grid.ny} x "
                f"{grid.nz} cells of {grid.dx:g} x {grid.dy:g} x {grid.dz:g} m): leave out "
                "--dx and --dz to run on it")
    lengths = {"x_length": grid.nx * grid.dx, "y_length": grid.ny * grid.dy,
               "z_length": grid.nz * grid.dz}
    return {"dx": grid.dx, "dy": grid.dy, "dz": grid.dz, **lengths,
            "x_centre": lengths["x_length"] / 2, "y_centre": lengths["y_length"] / 2}


#: What ``xlex train`` records beside the model: the data and training options.
TRAINING_RECORD = "training.json"
#: Options that make the training data; a folder trained on other data is refused.
DATA_OPTIONS = ("truth", "factors", "every", "steps", "test_fraction", "seed")


def _numbers(option, text, kind, count=None):
    """The comma-separated numbers of ``option``, or a clear error."""
    try:
        values = [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or (count is not None and len(values) != count):
        many = f"{count} " if count else ""
        example = {"--factors": "6,6,3", "--learning-rate": "1e-3,1e-6"}.get(option, "3,6,12")
        raise XlexError(f"{option} {text!r}: give {many}comma-separated "
                        f"{'integers' if kind is int else 'numbers'}, e.g. {option} {example}")
    return values


def _checkpoints_in(folder: Path):
    """The Ctrl-C saver of ``xlex train``: which epoch the folder's checkpoints reach."""
    def describe():
        from xlex.ml.training import CHECKPOINTS
        where = folder / CHECKPOINTS
        done = [int(p.name) for p in where.iterdir() if p.name.isdigit()] if where.is_dir() else []
        if not done:
            return f"{folder} holds no checkpoint yet (one is saved after every epoch)"
        return (f"{folder} holds the checkpoint after epoch {max(done)}; the same command "
                "resumes from it")
    return describe


def _check_training_folder(folder: Path, record: dict):
    """Refuse a file, a model nobody trained here, or a training on other data."""
    from xlex.ml.training import CHECKPOINTS, MODEL_FILE
    if folder.exists() and not folder.is_dir():
        raise XlexError(f"-o {folder} is a file; give a folder for the model and checkpoints")
    saved = folder / TRAINING_RECORD
    if saved.is_file():
        before = json.loads(saved.read_text())
        differ = [k for k in DATA_OPTIONS if before.get(k) != record[k]]
        if differ:
            raise XlexError(
                f"{folder} holds a training on other data ({', '.join(differ)}: "
                f"{[before.get(k) for k in differ]} there, {[record[k] for k in differ]} now); "
                "resume with the same options or choose another folder with -o")
    elif (folder / MODEL_FILE).exists() or (folder / CHECKPOINTS).exists():
        raise XlexError(f"{folder} holds a model or checkpoints that `xlex train` did not "
                        "write; choose another folder with -o")


def cmd_train(args):
    if args.paper:
        return _train_paper(args)
    if args.smoke:
        raise XlexError("--smoke goes with --paper (the paper's experiment at a CPU's size)")
    if not args.truth:
        raise XlexError("give the truth runs to learn from, e.g. xlex train truth_*.nc -o "
                        "model/ (or xlex train --paper for the paper's whole experiment)")
    folder = Path(args.output or "model")
    paths = [_readable(p, "truth", directory_ok=True) for p in args.truth]  # Zarr: a folder
    lookahead = _numbers("--lookahead", args.lookahead, int)
    record = {"truth": [str(p.resolve()) for p in paths],
              "factors": _numbers("--factors", args.factors, int, 3), "every": args.every,
              "steps": args.steps or max(lookahead), "test_fraction": args.test_fraction,
              "seed": args.seed, "lookahead": lookahead,
              "epochs": _numbers("--epochs", args.epochs, int),
              "learning_rate": _numbers("--learning-rate", args.learning_rate, float),
              "batch_size": args.batch_size, "preset": args.preset,
              "precision": args.precision, "level_floor": _level_floor_option(args)}
    from xlex.ml.training import check_schedule
    check_schedule(**_schedule_options(record))  # before any data is read
    _check_training_folder(folder, record)
    with interrupt.saving(_checkpoints_in(folder)):
        return _train(args, folder, record)


def _train(args, folder, record):
    import xlex.ml
    from xlex.ml.training import MODEL_FILE, window_step
    started = time.perf_counter()
    train, test = xlex.ml.make_training_data(
        record["truth"], factors=tuple(record["factors"]), every=record["every"],
        steps=record["steps"], test_fraction=record["test_fraction"], seed=record["seed"])
    record["dt"] = window_step(train)
    grid = " x ".join(str(train.sizes[d]) for d in ("xh", "yh", "zh"))
    print(f"xlex train: {train.sizes['window']} training and "
          f"{test.sizes.get('window', 0)} test windows of {record['steps']} steps of "
          f"{record['dt']:g} s on {grid} coarse cells", flush=True)
    model = xlex.ml.NeuralSGS.create(train, preset=record["preset"], seed=record["seed"])
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / TRAINING_RECORD, json.dumps(record, indent=1))
    model, history = xlex.ml.train_online(
        train, model=model, test=test if test.sizes.get("window") else None,
        directory=folder, progress=not args.no_progress, **_schedule_options(record))
    tmp = folder / "history.nc.part"
    history.to_netcdf(tmp)
    os.replace(tmp, folder / "history.nc")
    loss = history["train_loss"].values
    tested = history["test_loss"].values
    print(f"wrote {folder / MODEL_FILE} ({model.parameter_count:,} weights), "
          f"{folder / 'history.nc'} and {folder / TRAINING_RECORD}: training loss "
          f"{loss[0]:.4g} -> {loss[-1]:.4g}"
          + (f", test loss {tested[-1]:.4g}" if tested.size and tested[-1] == tested[-1] else "")
          + f" ({time.perf_counter() - started:.0f} s); run with it: xlex run --sgs {folder}")
    return 0


def _schedule_options(record) -> dict:
    """The keywords of train_online that the options of ``xlex train`` give."""
    one = {k: record[k][0] if len(record[k]) == 1 else tuple(record[k])
           for k in ("lookahead", "epochs", "learning_rate")}
    return {**one, **{k: record[k] for k in ("batch_size", "precision", "seed", "level_floor")}}


def _level_floor_option(args) -> float:
    from xlex.ml.training import LEVEL_FLOOR
    return LEVEL_FLOOR if args.level_floor is None else args.level_floor


def _write_atomically(path: Path, text: str):
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    os.replace(tmp, path)


def _train_paper(args):
    if args.truth:
        raise XlexError("--paper makes its own truth runs; give no files with it")
    from xlex.ml import paper
    argv = ["--out", args.output or "paper", "--epochs", *args.epochs.split(",")]
    argv += ["--smoke"] * args.smoke + ["--no-progress"] * args.no_progress
    return paper.main(argv)


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
    names = (Path(args.run).stem, Path(args.reference).stem)  # the files, not "CM1" always
    plot.compare(run, ref, args.var, pick, labels=names).savefig(
        f"{prefix}_{args.var}_sections.png", dpi=110)
    plot.metrics(run, ref, args.var, label=" vs ".join(names)).savefig(
        f"{prefix}_{args.var}_metrics.png", dpi=110)
    print(f"wrote {prefix}_{args.var}_sections.png and {prefix}_{args.var}_metrics.png")
    return 0


def cmd_bench(args):
    from xlex import bench
    return bench.main(args)


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
    _add_train(sub)
    _add_datasets(sub)
    args = parser.parse_args(argv)
    interrupt.install(args.command)
    commands = {"run": cmd_run, "compare": cmd_compare, "bench": cmd_bench,
                "train": cmd_train, "datasets": cmd_datasets}
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
