"""The paper's gray-zone experiment end to end: ``python -m xlex.ml.paper``.

Section 2.2.2 of the LEX paper: six moist warm bubbles (theta_c = 0.5 to 3.0
K) at 100 m (240 x 240 x 120 cells, dt = 5 s) for 30, 25 and 20 minutes by
pairs; coarse-grained to 600 x 600 x 300 m (40 x 40 x 40 cells) every 15 s;
windows of 12 look-ahead steps split 90/10; the ``paper`` network (7.2 M
weights); online training in float64 over look-aheads 3, 6 and 12 with the
learning rate decaying from 1e-3 to 1e-6. Meant for a GPU: one truth run is
6.9 M cells for 240 to 360 steps.

Each phase writes into ``--out`` and is skipped when its output is there, so
the command can be run again after an interruption and goes on where it
stopped: truth stores (``truth_<theta_c>K.nc``, resumed by
:func:`xlex.resume` when incomplete), then the trained model and its
checkpoints (``model/``, resumed by :func:`xlex.ml.train_online`).
``--smoke`` runs the same pipeline at a size a CPU does in minutes, to check
an installation before a long run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: theta_c [K] of the truth runs and their durations [min] (the paper's pairs).
AMPLITUDES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
DURATIONS = (30, 30, 25, 25, 20, 20)
#: The paper's configuration; ``SMOKE`` shrinks it to check the pipeline on a CPU.
PAPER = {"dx": 100.0, "dt": 5.0, "output_every": 15.0, "factors": (6, 6, 3), "every": 1,
         "steps": 12, "lookahead": (3, 6, 12), "preset": "paper", "amplitudes": AMPLITUDES,
         "durations": DURATIONS, "batch_size": 1}
SMOKE = {"dx": 1000.0, "dt": 10.0, "output_every": 20.0, "factors": (2, 2, 2), "every": 1,
         "steps": 2, "lookahead": (1, 2), "preset": "default", "amplitudes": (2.0, 3.0),
         "durations": (3, 3), "batch_size": 2}


def _log(message):
    print(f"[xlex.ml.paper] {message}", flush=True)


def truth_runs(out: Path, config: dict, *, progress=True) -> list[Path]:
    """The truth stores, made (or completed) as needed."""
    import xlex
    from xlex.io.store import open_store
    paths = []
    for theta_c, minutes in zip(config["amplitudes"], config["durations"], strict=True):
        path = out / f"truth_{theta_c:g}K.nc"
        paths.append(path)
        if path.exists():
            status = open_store(path, load=False).attrs.get("xlex_status")
            if status == "complete":
                _log(f"{path.name}: complete, kept")
                continue
            _log(f"{path.name}: {status}, resumed")
            xlex.resume(path, progress=progress)
            continue
        start = time.perf_counter()
        case = xlex.cases.warm_bubble(theta_c=theta_c, dx=config["dx"])
        cells = " x ".join(str(case.sizes[d]) for d in ("xh", "yh", "zh"))
        _log(f"{path.name}: {cells} cells, {minutes} min at dt {config['dt']:g} s")
        case.lex.integrate(f"{minutes}min", dt=config["dt"],
                           output_every=f"{config['output_every']:g}s",
                           precision="float64", progress=progress, store=path)
        _log(f"{path.name}: {time.perf_counter() - start:.0f} s")
    return paths


def train(out: Path, paths, config: dict, *, epochs, progress=True):
    """Training data from the truth stores and the online training."""
    import xlex.ml
    start = time.perf_counter()
    data, test = xlex.ml.make_training_data(
        [str(p) for p in paths], factors=config["factors"], every=config["every"],
        steps=config["steps"], test_fraction=0.1, seed=0)
    cells = " x ".join(str(data.sizes[d]) for d in ("xh", "yh", "zh"))
    _log(f"training data: {data.sizes['window']} training and {test.sizes['window']} test "
         f"windows of {config['steps']} steps on {cells} cells")
    model = xlex.ml.NeuralSGS.create(data, preset=config["preset"], seed=0)
    _log(f"network: {model.parameter_count:,} weights ({config['preset']} preset); "
         f"{time.perf_counter() - start:.0f} s to make the data and the model")
    start = time.perf_counter()
    model, history = xlex.ml.train_online(
        data, model=model, test=test, lookahead=config["lookahead"], epochs=epochs,
        learning_rate=(1e-3, 1e-6), batch_size=config["batch_size"], precision="float64",
        level_floor=0.0, directory=out / "model", progress=progress)  # eq. 25 as the paper
    history.to_netcdf(out / "model" / "history.nc")
    _log(f"trained in {time.perf_counter() - start:.0f} s: {model.source}; "
         f"final test loss {float(history.test_loss[-1]):.4g}")
    return model, history


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xlex.ml.paper",
        description="The paper's gray-zone experiment: truth runs at 100 m, coarse-grained "
                    "training data, online training of the paper's network (for a GPU).")
    parser.add_argument("--out", type=Path, default=Path("paper"),
                        help="folder for the truth stores and the model (default: paper/)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1],
                        help="epochs of each look-ahead stage (3, 6, 12): one number for all "
                             "or one per stage (the paper trained 88 in all; default 1)")
    parser.add_argument("--truth-only", action="store_true", help="stop after the truth runs")
    parser.add_argument("--smoke", action="store_true",
                        help="the same pipeline on a grid a CPU does in minutes (1 km truth, "
                             "2 amplitudes, look-aheads 1 and 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    config = SMOKE if args.smoke else PAPER
    args.out.mkdir(parents=True, exist_ok=True)
    timings = {}
    start = time.perf_counter()
    paths = truth_runs(args.out, config, progress=not args.no_progress)
    timings["truth_s"] = time.perf_counter() - start
    if not args.truth_only:
        start = time.perf_counter()
        train(args.out, paths, config, epochs=tuple(args.epochs),
              progress=not args.no_progress)
        timings["training_s"] = time.perf_counter() - start
    (args.out / "timings.json").write_text(json.dumps(timings, indent=1))
    _log(f"wall times: {timings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
