"""The ``xlex`` command: run, compare, bench, and exit code 2 for user errors."""

import contextlib
import io
import json
import re
import shutil
import signal
import warnings

import numpy as np
import pytest
import xarray as xr

from xlex import cli
from xlex.ml.training import LEVEL_FLOOR

PNG = b"\x89PNG\r\n\x1a\n"


def run_main(argv):
    """``cli.main(argv)`` -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def run_args(path, dx="2000", *extra):
    return ["run", "warm-bubble", "--dx", dx, "--duration", "2min", "--dt", "20",
            "--output-every", "1min", "-o", str(path), "--no-progress", *extra]


def snapshot(path):
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`xlex run` three times on the same file: fresh, again without --overwrite, and
    with --overwrite on a finer (1 km) grid, so that the replaced file is recognisable."""
    folder = tmp_path_factory.mktemp("cli")
    nc, png = folder / "b.nc", folder / "b.png"
    result = {"folder": folder, "nc": nc, "png": png}
    result["first"] = run_main(run_args(nc))
    result["first_nc"], result["first_png"] = snapshot(nc), snapshot(png)
    shutil.copy(nc, folder / "coarse.nc")
    result["again"] = run_main(run_args(nc))
    result["again_nc"], result["again_png"] = snapshot(nc), snapshot(png)
    result["overwrite"] = run_main(run_args(nc, "1000", "--overwrite"))
    return result


def test_run_writes_netcdf_and_png(runs):
    code, out, err = runs["first"]
    assert code == 0, err
    assert str(runs["nc"]) in out and str(runs["png"]) in out
    with xr.open_dataset(runs["folder"] / "coarse.nc") as ds:
        assert ds.sizes["time"] == 3
        assert [float(t) for t in ds["time"].values] == [0.0, 60.0, 120.0]
        assert ds.sizes["xh"] == 12
        assert ds.attrs["xlex_dt"] == 20.0
        assert ds.attrs["case"] == "warm_bubble"
        assert ds.attrs["xlex_status"] == "complete"
        assert ds["th"].attrs["standard_name"] == "air_potential_temperature"
    assert runs["first_png"][0].startswith(PNG)
    assert not list(runs["folder"].glob("*.part*"))


def test_run_and_resume_report_their_wall_time(runs, tmp_path):
    # a resumed run's Dataset is read back from the file: the wall time was "None s"
    code, out, err = runs["first"]
    assert re.search(r"wall \d+\.\d s\)", out), out
    nc = tmp_path / "r.nc"
    shutil.copy(runs["folder"] / "coarse.nc", nc)
    code, out, err = run_main(["run", "--resume", str(nc), "--duration", "1min",
                               "--no-progress"])
    assert code == 0, err
    assert "wall None" not in out and re.search(r"4 outputs .* wall \d+\.\d s\)", out), out


def test_main_leaves_the_sigint_handler_as_it_found_it(runs):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_refuses_to_overwrite(runs):
    code, out, err = runs["again"]
    assert code == 2
    assert str(runs["nc"]) in err
    assert "--overwrite" in err
    assert "Traceback" not in err
    assert runs["again_nc"] == runs["first_nc"]  # bytes and mtime unchanged
    assert runs["again_png"] == runs["first_png"]


def test_run_overwrite(runs):
    code, out, err = runs["overwrite"]
    assert code == 0, err
    with xr.open_dataset(runs["nc"]) as ds:
        assert ds.sizes["xh"] == 24  # the 1 km run replaced the 2 km one
        assert ds.sizes["time"] == 3
    assert runs["png"].read_bytes().startswith(PNG)
    assert runs["png"].read_bytes() != runs["first_png"][0]


def test_run_refuses_an_existing_png(tmp_path):
    png = tmp_path / "c.png"
    png.write_bytes(b"keep me")
    code, _, err = run_main(run_args(tmp_path / "c.nc"))
    assert code == 2
    assert str(png) in err
    assert png.read_bytes() == b"keep me"
    assert not (tmp_path / "c.nc").exists()


def test_compare_with_itself(runs, capsys):
    nc = runs["nc"]  # the 24 x 24 x 12 run: large enough for MS-SSIM's 11-point window
    code = cli.main(["compare", str(nc), str(nc), "--var", "thpert"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:3] == ["time", "(s)", "R"]
    rows = [line.split() for line in lines[1:] if line.split() and
            line.split()[0].replace(".", "").isdigit()]
    assert [float(r[0]) for r in rows] == [0.0, 60.0, 120.0]
    for row in rows:
        assert float(row[1]) == pytest.approx(1.0, abs=1e-9)  # R
        assert float(row[2]) == 0.0  # MSE
        assert float(row[3]) == pytest.approx(1.0, abs=1e-6)  # MS-SSIM
    for suffix in ("sections", "metrics"):
        figure = runs["folder"] / f"b_thpert_{suffix}.png"
        assert figure.read_bytes().startswith(PNG)
        assert str(figure) in out


def test_compare_figures_prefix(runs, tmp_path, capsys):
    prefix = tmp_path / "fig"
    code = cli.main(["compare", str(runs["nc"]), str(runs["nc"]), "--var", "w",
                         "--figures", str(prefix)])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "fig_w_sections.png").exists()
    assert (tmp_path / "fig_w_metrics.png").exists()


def test_compare_small_grid(runs, capsys):
    nc = runs["folder"] / "coarse.nc"
    code = cli.main(["compare", str(nc), str(nc), "--var", "thpert",
                         "--figures", str(runs["folder"] / "small")])
    assert code == 0, capsys.readouterr().err


def test_compare_unknown_variable(runs, capsys):
    code = cli.main(["compare", str(runs["nc"]), str(runs["nc"]), "--var", "nonsense"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "nonsense" in err
    assert "Traceback" not in err


BENCH_KEYS = {"size", "solver", "compile_seconds", "seconds_per_step",
              "pressure_seconds_per_step", "points_per_second", "pressure_iterations"}


@pytest.fixture(scope="module")
def bench():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_main(["bench", "--sizes", "12x12x6", "--solvers", "pcg,bicgstab",
                           "--steps", "1", "--json"])
    return result, caught


def test_bench_json(bench):
    (code, out, err), _ = bench
    assert code == 0, err
    records = json.loads(out)
    assert isinstance(records, list) and len(records) == 2
    assert [r["solver"] for r in records] == ["pcg", "bicgstab"]
    for record in records:
        assert BENCH_KEYS <= set(record), set(record)
        assert record["size"] == "12x12x6"
        for key in BENCH_KEYS - {"size", "solver"}:
            assert isinstance(record[key], (int, float)), key
            assert record[key] > 0, key


def test_bench_emits_no_warnings(bench):
    _, caught = bench
    assert not [str(w.message) for w in caught]


def test_bench_neural_times_the_network(capsys):
    """--sgs neural times the hybrid step and the network alone; a grid the network
    cannot halve is refused before anything compiles."""
    code, out, err = run_main(["bench", "--sizes", "12x12x6", "--solvers", "pcg",
                               "--sgs", "neural", "--steps", "1", "--json"])
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["sgs"] == "neural" and record["network_parameters"] == 74005
    assert record["network_seconds_per_step"] > 0 and record["seconds_per_step"] > 0
    code, out, err = run_main(["bench", "--sizes", "13x12x6", "--solvers", "pcg",
                               "--sgs", "neural", "--steps", "1"])
    assert code == 2 and "nx=13" in err and "Traceback" not in err
    code, out, err = run_main(["bench", "--sizes", "12x12x6", "--sgs", "neural-big"])
    assert code == 2 and "neural-big" in err


def test_bench_text(capsys):
    code = cli.main(["bench", "--sizes", " ", "--solvers", "pcg"])  # nothing to do
    out, err = capsys.readouterr()
    assert code == 0, err


@pytest.mark.parametrize("argv, words", [
    (["run", "warm-bubble", "--dx", "700"], ["700"]),
    (["run", "warm-bubble", "--dx", "2000", "--duration", "20 parsecs"], ["duration"]),
    (["run", "warm-bubble", "--dx", "2000", "--dt", "abc"], ["dt"]),
    (["run", "warm-bubble", "--dx", "2000", "--dt", "25", "--output-every", "1min"],
     ["output_every", "dt"]),
    (["run", "warm-bubble", "--dx", "2000", "--theta-c", "-3"], ["theta_c"]),
])
def test_user_errors_exit_2_without_traceback(tmp_path, capsys, argv, words):
    code = cli.main([*argv, "-o", str(tmp_path / "x.nc"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("xlex run: error:")
    assert "Traceback" not in err
    for word in words:
        assert word in err
    assert not (tmp_path / "x.nc").exists()
    assert not (tmp_path / "x.png").exists()


def test_bench_bad_size_exits_2(capsys):
    code = cli.main(["bench", "--sizes", "12x12", "--steps", "1"])
    assert code == 2
    assert "12x12" in capsys.readouterr().err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "cold-bubble"])
    assert info.value.code == 2
    assert "cold-bubble" in capsys.readouterr().err


def test_version():
    from xlex import __version__
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert out.getvalue().strip() == f"xlex {__version__}"


def test_datasets_writes_the_packaged_cm1_and_never_overwrites(tmp_path):
    import xlex
    target = tmp_path / "cm1.nc"
    code, out, err = run_main(["datasets", "cm1-warm-bubble", "-o", str(target)])
    assert code == 0, err
    assert str(target) in out and "xlex compare" in out
    cm1 = xlex.open_cm1(target)
    assert cm1.sizes["xf"] == 60 and float(cm1.time[-1]) == 1200.0
    before = snapshot(target)
    code, out, err = run_main(["datasets", "cm1-warm-bubble", "-o", str(target)])
    assert code == 2 and err.startswith("xlex datasets: error:") and "--overwrite" in err
    assert snapshot(target) == before
    assert not list(tmp_path.glob("*.part"))


@pytest.fixture()
def bad_files(tmp_path):
    """A missing file, a text file named .nc, and a NetCDF file of the wrong kind."""
    junk = tmp_path / "junk.nc"
    junk.write_text("not a NetCDF file\n")
    other = tmp_path / "other.nc"
    xr.Dataset({"temperature": ("x", [1.0, 2.0])}).to_netcdf(other)
    return {"missing": tmp_path / "missing.nc", "junk": junk, "other": other}


@pytest.mark.parametrize("kind, words", [("missing", ["does not exist"]),
                                         ("junk", ["not a NetCDF file"]),
                                         ("other", [])])
@pytest.mark.parametrize("where", ["run", "reference", "basestate", "resume"])
def test_bad_files_exit_2_with_one_line(runs, bad_files, kind, words, where):
    good, bad = str(runs["nc"]), str(bad_files[kind])
    argv = {"run": ["compare", bad, good], "reference": ["compare", good, bad],
            "basestate": ["compare", good, good, "--basestate", bad],
            "resume": ["run", "--resume", bad, "--no-progress"]}[where]
    if where == "basestate" and kind == "other":
        pytest.skip("--basestate is only read for CM1 references")
    code, out, err = run_main(argv)
    assert code == 2, (out, err)
    assert err.startswith(f"xlex {argv[0]}: error:")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert bad in err
    for word in words:
        assert word in err


def test_figure_times_span_the_run():
    import numpy as np

    from xlex.plot import pick_times
    assert pick_times(np.arange(21) * 60.0) == [0.0, 300.0, 600.0, 900.0, 1200.0]
    cm1 = [0.0, 60.0, 300.0, 600.0, 900.0, 1200.0]
    assert pick_times(cm1)[-1] == 1200.0 and len(pick_times(cm1)) <= 6
    assert pick_times([0.0, 60.0, 120.0]) == [0.0, 60.0, 120.0]


def test_panel_titles_give_times_in_minutes_and_seconds():
    """Outputs every 20 s gave titles such as 't = 1.33333 min'."""
    from xlex.plot import time_label
    assert [time_label(t) for t in (0.0, 80.0, 160.0, 1200.0, 40.0, 7.5)] == [
        "t = 0 min", "t = 1 min 20 s", "t = 2 min 40 s", "t = 20 min", "t = 40 s",
        "t = 7.5 s"]


def test_section_panels_have_their_own_colour_range_and_long_name(runs):
    import matplotlib
    matplotlib.use("Agg")
    from xlex import plot
    with xr.open_dataset(runs["first_nc"][0] and runs["folder"] / "coarse.nc") as out:
        fig = plot.plot_section(out, "thpert")
        long_name = out["thpert"].attrs["long_name"]
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    meshes = [ax.collections[0] for ax in panels if ax.collections]
    limits = [m.get_clim()[1] for m in meshes]
    assert len(set(limits)) == len(limits) > 1  # a decaying bubble: one range per panel
    assert long_name in fig._suptitle.get_text()


# --------------------------------------------------------------------------- xlex train


def truth_args(path, theta_c):
    """A 2 km truth run of 3 min, an output every 20 s (10 outputs)."""
    return ["run", "--theta-c", str(theta_c), "--dx", "2000", "--duration", "3min",
            "--dt", "20", "--output-every", "20s", "-o", str(path), "--no-progress"]


#: Train on the truth grid itself (factors 1): 10 windows of one step, 1 for testing.
TRAIN = ["--factors", "1,1,1", "--lookahead", "1", "--epochs", "2", "--batch-size", "3",
         "--learning-rate", "1e-3", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two truth runs and `xlex train` on them into ``model/``."""
    folder = tmp_path_factory.mktemp("train")
    truths = [folder / f"truth_{t}.nc" for t in (2, 3)]
    for path, theta_c in zip(truths, (2, 3)):
        code, _, err = run_main(truth_args(path, theta_c))
        assert code == 0, err
    model = folder / "model"
    result = run_main(["train", *map(str, truths), *TRAIN, "-o", str(model)])
    return truths, model, result


def test_train_writes_the_model_its_history_and_its_options(trained):
    truths, model, (code, out, err) = trained
    assert code == 0, err
    assert out.startswith("xlex train: 9 training and 1 test windows of 1 steps of 20 s on "
                          "12 x 12 x 6 coarse cells"), out
    assert f"run with it: xlex run --sgs {model}" in out
    history = xr.open_dataset(model / "history.nc")
    assert history.sizes["epoch"] == 2 and history.sizes["iteration"] == 6  # 9 // 3 per epoch
    assert np.all(np.isfinite(history["test_loss"].values))
    record = json.loads((model / cli.TRAINING_RECORD).read_text())
    assert record["dt"] == 20.0 and record["factors"] == [1, 1, 1]
    assert record["level_floor"] == LEVEL_FLOOR  # the library's default
    assert record["truth"] == [str(p.resolve()) for p in truths]
    assert cli._checkpoints_in(model)() == (f"{model} holds the checkpoint after epoch 2; "
                                            "the same command resumes from it")


def test_train_again_resumes_from_the_checkpoint(trained):
    """The same command on a finished folder trains nothing and gives the same model."""
    truths, model, (_, out, _) = trained
    weights = (model / "model.nn").read_bytes()
    history = xr.open_dataset(model / "history.nc").load()
    code, again, err = run_main(["train", *map(str, truths), *TRAIN, "-o", str(model)])
    assert code == 0, err
    assert (model / "model.nn").read_bytes() == weights
    xr.testing.assert_identical(xr.open_dataset(model / "history.nc").load(), history)
    assert again.splitlines()[-1].split(" (")[0] == out.splitlines()[-1].split(" (")[0]


def test_run_with_the_trained_model_takes_its_grid_and_step(trained, tmp_path):
    """`xlex run --sgs DIR` runs the hybrid model on the model's grid at its training
    step; the trained network changes the run (its last layer is no longer zero).
    The runs are in float64: after 6 small Adam steps the correction to th can lie
    below float32's resolution of 300 K (2e-5 K), and a float32 run did not show it."""
    _, model, _ = trained
    runs = {}
    for sgs in (str(model), "none"):
        path = tmp_path / f"{'none' if sgs == 'none' else 'hybrid'}.nc"
        code, out, err = run_main(["run", "--sgs", sgs, "--theta-c", "2.5", "--duration",
                                   "1min", "--output-every", "1min", "-o", str(path),
                                   "--precision", "float64",
                                   "--no-progress"] + (["--dx", "2000", "--dt", "20"]
                                                       if sgs == "none" else []))
        assert code == 0, err
        runs[sgs] = xr.open_dataset(path)
    hybrid = runs[str(model)]
    assert (hybrid.sizes["xh"], hybrid.sizes["zh"]) == (12, 6)
    assert float(hybrid.attrs["xlex_dt"]) == 20.0
    assert str((model / "model.nn").resolve()) in hybrid.attrs["xlex_physics"]
    difference = abs(hybrid["th"] - runs["none"]["th"]).isel(time=-1).max()
    assert float(difference) > 0.0


@pytest.mark.parametrize("argv, words", [
    (["train", "-o", "m"], ["give the truth runs", "xlex train truth_*.nc"]),
    (["train", "nowhere.nc"], ["truth file nowhere.nc does not exist"]),
    (["train", "{truth}", "--factors", "2,2"], ["--factors", "3 comma-separated", "6,6,3"]),
    (["train", "{truth}", "--lookahead", "0"], ["lookahead", ">= 1"]),
    (["train", "{truth}", "--learning-rate", "1e-4,1e-3"], ["increases"]),
    (["train", "{truth}", "--epochs", "2,2", "--lookahead", "3"], ["epochs", "lookahead"]),
    (["train", "{truth}", "--level-floor", "2"], ["level_floor=2.0", "[0, 1]"]),
    (["train", "{truth}", "--smoke"], ["--smoke", "--paper"]),
    (["train", "{truth}", "--paper"], ["--paper", "no files"]),
    (["train", "{truth}", "-o", "{truth}"], ["is a file"]),
    (["train", "{truth}", "-o", "{model}"], ["other data", "factors"]),
    (["run", "--sgs", "nowhere"], ["--sgs nowhere", "none, smagorinsky, dynamic"]),
    (["run", "--sgs", "{truth}"], ["not a neural model file"]),
    (["run", "--sgs", "{model}", "--dx", "1000"], ["--dx 1000", "12 x 12 x 6 cells",
                                                   "leave out --dx"]),
    (["run", "--sgs", "{empty}"], ["holds no model.nn", "xlex train"]),
], ids=["no-truth", "missing-truth", "factors", "lookahead", "rate-increases",
        "epochs-per-stage", "level-floor", "smoke-alone", "paper-with-files", "output-a-file",
        "other-data", "sgs-unknown", "sgs-not-a-model", "sgs-other-grid", "sgs-empty-folder"])
def test_train_and_run_sgs_refuse_bad_input_before_work(trained, tmp_path, monkeypatch, argv,
                                                        words):
    """Each mistake exits 2 with one line naming it, before any data is read or
    anything compiles; nothing is written."""
    import xlex.ml
    truths, model, _ = trained
    (tmp_path / "empty").mkdir()
    fill = {"{truth}": str(truths[0]), "{model}": str(model), "{empty}": str(tmp_path / "empty")}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(xlex.ml, "make_training_data", None)  # reading data fails the test
    monkeypatch.setattr(xlex.ml.NeuralSGS, "create", None)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_main([fill.get(a, a) for a in argv])
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_blow_up_names_the_file_and_its_records_and_says_to_lower_dt(tmp_path):
    """5 K bubble at 1 km with dt = 60 s blows up between 360 and 480 s (measured):
    exit 2, one error line naming the store and the 4 records it holds (0 to
    360 s, marked 'blew up'), and a smaller dt, not --resume (which would blow
    up again) nor the Python-only .outputs."""
    path = tmp_path / "b.nc"
    code, out, err = run_main(["run", "--dx", "1000", "--dt", "60", "--duration", "8min",
                               "--output-every", "2min", "-o", str(path), "--no-progress"])
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.startswith("xlex run: error:")]
    assert len(lines) == 1, err
    line = lines[0]
    assert "blew up between t = 360 s and 480 s" in line
    assert f"{path} holds the 4 complete record(s) before it, marked 'blew up'" in line
    assert "rerun with a smaller dt (now 60 s), e.g. --dt 30" in line
    assert "--resume" not in line and ".outputs" not in line and "Traceback" not in err
    import xarray as xr
    with xr.open_dataset(path) as f:
        assert f.sizes["time"] == 4 and f.attrs["xlex_status"] == "blew up"
