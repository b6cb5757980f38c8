"""The ``xlex`` command: run, compare, bench, and exit code 2 for user errors."""

import contextlib
import io
import json
import shutil
import warnings

import pytest
import xarray as xr

from xlex import cli

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
