"""``xlex bench`` (xlex.bench): compile and run time apart, a header, a progress
line per case, a total, ``--json``; the case table takes new kinds."""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xlex import bench, compilation_cache
from xlex.core.errors import OptionError


def parse(argv):
    parser = argparse.ArgumentParser(prog="xlex bench")
    bench.add_arguments(parser)
    return parser.parse_args(argv)


def fake_step(case, *, precision, steps, spinup, shared):
    """A record without compiling anything: the format, not the numbers."""
    shared["calls"] = shared.get("calls", 0) + 1
    return {"kind": case.kind, "size": case.size, "solver": case.solver, "sgs": case.sgs,
            "precision": precision, "steps": steps, "compile_seconds": 1.0,
            "compile_seconds_total": 2.5, "run_seconds_total": 0.5, "cache_hits": 3,
            "seconds_per_step": 0.1, "pressure_seconds_per_step": 0.01,
            "points_per_second": 1e6, "pressure_iterations": 3.0}


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(bench.KINDS, "step", fake_step)


def test_header_progress_lines_and_total(fake, capsys):
    assert bench.main(parse(["--sizes", "12x12x6,24x24x12", "--solvers", "pcg"])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("xlex bench: 2 case(s), warm bubble, float32")
    assert "compilation cache:" in out[1]
    titles = out[3]
    for title in ("compile s", "run s", "cached", "s/step", "it/solve"):
        assert title in titles
    assert out[4].startswith("[1/2] 12x12x6 none pcg") and "2.50" in out[4]
    assert out[5].startswith("[2/2] 24x24x12 none pcg")
    assert out[6] == ("total: compile 5.0 s (6 program(s) from the compilation cache), "
                      "run 1.0 s, " + out[6].split("run 1.0 s, ")[1])


def test_json_goes_to_stdout_alone(fake, capsys):
    assert bench.main(parse(["--sizes", "12x12x6", "--sgs", "none,smagorinsky",
                             "--json"])) == 0
    captured = capsys.readouterr()
    records = json.loads(captured.out)
    assert [(r["sgs"], r["solver"]) for r in records] == [
        ("none", "pcg"), ("none", "bicgstab"), ("smagorinsky", "pcg"),
        ("smagorinsky", "bicgstab")]
    assert "xlex bench:" in captured.err and "[4/4]" in captured.err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        parse(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {','.join(bench.DEFAULT_SIZES)})" in text
    assert f"(default: {bench.DEFAULT_STEPS})" in text
    assert "--json" in text and "--no-compilation-cache" in text


@pytest.mark.parametrize("argv, words", [
    (["--sizes", "12x12"], ["12x12", "NXxNYxNZ"]),
    (["--solvers", "multigrid"], ["multigrid", "pcg"]),
    (["--sgs", "neural-big"], ["neural-big"]),
    (["--steps", "0"], ["--steps", ">= 1"]),
    (["--devices", "two"], ["--devices", "integers >= 1"]),
    (["--members", "0"], ["--members", "integers >= 1"]),
    (["--devices", "64"], ["--devices 64", "only"]),  # this process has fewer
    (["--training", "--members", "2"], ["--members", "--training", "--batch-size"]),
])
def test_bad_options_fail_before_compiling(fake, argv, words):
    with pytest.raises(OptionError) as info:
        bench.main(parse(argv))
    for word in words:
        assert word in str(info.value)


def test_a_new_kind_is_one_more_entry(monkeypatch):
    """The table: a new kind of benchmark plugs into run() through KINDS."""
    monkeypatch.setitem(bench.KINDS, "step", fake_step)
    seen = []
    records = bench.run(["12x12x6"], ["pcg", "bicgstab"], report=seen.append,
                        start=lambda case, n, total: seen.append((case.label(), n, total)))
    assert [r["solver"] for r in records] == ["pcg", "bicgstab"]
    assert seen[0] == ("12x12x6 none pcg", 1, 2) and seen[1] is records[0]


def test_a_real_case_splits_compile_and_run():
    rec = bench.bench_case("12x12x6", "pcg", steps=1, spinup=1)
    assert rec["kind"] == "step"
    assert rec["compile_seconds_total"] >= rec["compile_seconds"] > 0
    assert rec["run_seconds_total"] > 0 and rec["seconds_per_step"] > 0
    assert rec["pressure_iterations"] > 0 and rec["cache_hits"] >= 0


def test_an_ensemble_case_counts_the_points_of_every_member():
    one = bench.bench_case("12x12x6", "pcg", steps=1, spinup=1)
    rec = bench.bench_case("12x12x6", "pcg", steps=1, spinup=1, members=3)
    assert rec["members"] == 3 and rec["devices"] == 1
    assert rec["points_per_second"] == pytest.approx(3 * 864 / rec["seconds_per_step"])
    # the program holds three states: about three times the memory of one
    assert 2.5 < rec["bytes_per_point"] * 3 / one["bytes_per_point"] < 3.5
    assert np.isnan(rec["pressure_seconds_per_step"])  # probed on single runs only
    assert bench.Case("step", "12x12x6", members=3, devices=2).label() == (
        "12x12x6 none pcg 3m 2dev")


@pytest.fixture
def private_cache(tmp_path):
    saved_dir = jax.config.jax_compilation_cache_dir
    saved_time = jax.config.jax_persistent_cache_min_compile_time_secs
    compilation_cache.enable(tmp_path / "cache", min_compile_seconds=0.0)
    yield
    jax.config.update("jax_persistent_cache_min_compile_time_secs", saved_time)
    if saved_dir:
        compilation_cache.enable(saved_dir)
    else:
        compilation_cache.disable()


def test_the_clock_counts_programs_from_the_cache(private_cache):
    def program():  # a new function each time: nothing cached in memory
        return lambda x: jnp.sin(x) * 3.0 + 1.0

    x = jnp.arange(7.0)
    first = bench.Clock()
    first.compile(program(), x)
    assert first.cache_hits == 0 and first.compile_seconds > 0
    second = bench.Clock()
    second.compile(program(), x)  # loaded from the cache the first wrote
    assert second.cache_hits == 1


# --------------------------------------------------------------------------- --training


def fake_training(case, *, precision, steps, spinup, shared):
    """A training record without compiling anything."""
    return {"kind": "training", "size": case.size, "lookahead": case.lookahead,
            "batch_size": case.batch_size, "sgs": case.sgs, "solver": case.solver,
            "precision": precision, "updates": steps, "network_parameters": 74005,
            "compile_seconds": 10.0, "compile_seconds_total": 12.0,
            "run_seconds_total": 3.0, "cache_hits": 0, "seconds_per_update": 1.25,
            "temp_bytes": 2_500_000, "argument_bytes": 1_000_000,
            "peak_bytes_in_use": 4_000_000, "loss": 0.5}


def test_training_defaults_are_the_coarse_grid_float64_and_lookahead_1_3_12():
    opts = bench._options(parse(["--training"]))
    assert opts["sizes"] == ["16x16x20@600x600x400"] and opts["lookahead"] == (1, 3, 12)
    assert opts["precision"] == "float64" and opts["batch_size"] == 1
    assert opts["sgs"] == ["neural"] and opts["solvers"] == ["pcg"]
    assert opts["steps"] == bench.DEFAULT_UPDATES
    grid = bench._grid(opts["sizes"][0])
    assert (grid.nx, grid.ny, grid.nz, grid.dx, grid.dy, grid.dz) == (16, 16, 20, 600.0,
                                                                        600.0, 400.0)
    paper = bench._grid("40x40x40")  # the paper's coarse grid, without "@"
    assert (paper.dx, paper.dy, paper.dz) == (600.0, 600.0, 300.0)
    step = bench._options(parse([]))  # the step's defaults are unchanged
    assert step["precision"] == "float32" and step["sgs"] == ["none"]
    assert "lookahead" not in step


def test_training_header_and_progress_lines(monkeypatch, capsys):
    monkeypatch.setitem(bench.KINDS, "training", fake_training)
    assert bench.main(parse(["--training", "--lookahead", "1,12", "--batch-size", "2"])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("xlex bench --training: 2 case(s), one Adam update")
    assert "float64, batch 2" in out[0]
    for title in ("compile s", "s/update", "temp MB", "args MB", "device peak MB"):
        assert title in out[3]
    assert out[4].startswith("[1/2] 16x16x20@600x600x400 neural N=1 batch 2")
    assert out[5].startswith("[2/2] 16x16x20@600x600x400 neural N=12 batch 2")
    cells = out[4].split()
    assert "1.250" in cells and "2.5" in cells and cells[-1] == "4.0"


def never(*args, **kwargs):
    raise AssertionError("compiled before the options were checked")


@pytest.mark.parametrize("argv, words", [
    (["--training", "--lookahead", "0"], ["--lookahead", "'0'", "integer >= 1", "1,3,12"]),
    (["--training", "--lookahead", "1,2.5"], ["--lookahead", "'2.5'", "integer >= 1"]),
    (["--training", "--lookahead", "three"], ["--lookahead", "'three'"]),
    (["--training", "--lookahead", ","], ["--lookahead", "empty"]),
    (["--training", "--batch-size", "0"], ["--batch-size", "integer >= 1"]),
    (["--training", "--batch-size", "1.5"], ["--batch-size", "'1.5'"]),
    (["--lookahead", "3"], ["--lookahead", "add --training"]),
    (["--batch-size", "2"], ["--batch-size", "add --training"]),
    (["--training", "--sgs", "smagorinsky"], ["--sgs", "smagorinsky", "neural"]),
    (["--training", "--sizes", "8x8x7"], ["--sizes 8x8x7", "nz=7", "divisible"]),
    (["--training", "--sizes", "4x4x4"], ["--sizes 4x4x4", "at least 6"]),
    (["--training", "--sizes", "16x16x20@600x600"], ["16x16x20@600x600", "DXxDYxDZ"]),
    (["--training", "--steps", "0"], ["--steps", ">= 1"]),
])
def test_bad_training_options_fail_before_compiling(monkeypatch, argv, words):
    from xlex.ml.neural_sgs import NeuralSGS
    monkeypatch.setattr(bench.Clock, "compile", never)
    monkeypatch.setattr(NeuralSGS, "create", never)
    with pytest.raises(OptionError) as info:
        bench.main(parse(argv))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.fixture
def tiny_network(monkeypatch):
    """A one-level network of 4 channels (1,197 weights) as ``--sgs neural-tiny``:
    the program is the solver's as much as the network's, and compiles faster."""
    from xlex.ml.network import PRESETS, NetworkConfig
    monkeypatch.setitem(PRESETS, "tiny", NetworkConfig(widths=(4,), convs_per_level=1))
    monkeypatch.setitem(bench.NEURAL, "neural-tiny", "tiny")


def test_a_training_step_runs_at_lookahead_1(tiny_network):
    """One update (after a warm-up one) on 6 x 6 x 6 cells, float64, through a
    1-step rollout: finite, positive times, memory and loss. (One look-ahead only:
    compiling each update takes 25 to 60 s of CPU, the solver's program rather
    than the network's. The scratch memory of look-ahead 3 against 1 was
    0.25 MB and 3.4 MB here, 16.5 MB and 88.3 MB on 16 x 16 x 20 cells, where
    look-ahead 12 took 92.4 MB: docs/performance.md.)"""
    records = bench.run(["6x6x6@600x600x400"], ["pcg"], precision="float64", steps=1,
                        spinup=1, sgs=["neural-tiny"], lookahead=(1,), report=lambda r: None)
    (rec,) = records
    assert rec["kind"] == "training" and rec["precision"] == "float64"
    assert rec["lookahead"] == 1
    assert rec["batch_size"] == 1 and rec["network_parameters"] == 1197
    assert rec["compile_seconds_total"] >= rec["compile_seconds"] > 0
    assert rec["seconds_per_update"] > 0 and rec["run_seconds_total"] > 0
    assert rec["temp_bytes"] > 0 and rec["argument_bytes"] > 0
    assert jnp.isfinite(rec["loss"]) and rec["loss"] > 0
    json.dumps(rec)  # --json can print it
