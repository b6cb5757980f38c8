"""``xlex bench`` (xlex.bench): compile and run time apart, a header, a progress
line per case, a total, ``--json``; the case table takes new kinds."""

import argparse
import json

import jax
import jax.numpy as jnp
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
