"""A new user's first hour: the README's commands in order, in a fresh folder.

Runs the ``xlex`` command in subprocesses (as a shell would), from an empty
temporary directory, and checks exit codes, the files written and the
messages. The README's first command is run as written (20 min, 400 m,
about 15 s); the installation is left out.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
PNG = b"\x89PNG\r\n\x1a\n"


def xlex(folder, *args, timeout=600):
    """``xlex ARGS`` in ``folder`` -> CompletedProcess (text)."""
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    return subprocess.run([sys.executable, "-m", "xlex.cli", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=timeout)


def readme_command(pattern):
    """The README's command line starting with ``pattern`` (so the test follows it)."""
    for line in README.splitlines():
        line = line.split("  #")[0].split(" #")[0].strip()
        if line.startswith(pattern):
            return line.replace("python -m pip install . && ", "").split()
    raise AssertionError(f"the README has no command starting {pattern!r}")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("new_user")


@pytest.fixture(scope="module")
def first_run(home):
    argv = readme_command("python -m pip install . && xlex run")
    assert argv[:2] == ["xlex", "run"]
    return xlex(home, *argv[1:], "--no-progress")


def test_first_command_writes_the_run_and_its_figure(home, first_run):
    assert first_run.returncode == 0, first_run.stderr
    assert "bubble.nc" in first_run.stdout and "bubble.png" in first_run.stdout
    assert (home / "bubble.png").read_bytes().startswith(PNG)
    with xr.open_dataset(home / "bubble.nc") as out:
        assert out.sizes["time"] == 21 and out.sizes["xh"] == 60 and out.sizes["zh"] == 30
        assert float(out["w"].isel(time=-1).max()) > 5.0


def test_running_it_again_refuses_and_keeps_the_files(home, first_run):
    before = (home / "bubble.nc").stat().st_mtime_ns
    again = xlex(home, *readme_command("python -m pip install . && xlex run")[1:],
                 "--no-progress")
    assert again.returncode == 2
    assert again.stderr.startswith("xlex run: error:") and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert (home / "bubble.nc").stat().st_mtime_ns == before


def test_second_thing_compare_with_the_packaged_cm1(home, first_run):
    argv = readme_command("xlex datasets")
    done = xlex(home, *argv[1:])
    assert done.returncode == 0, done.stderr
    assert (home / "cm1.nc").exists()
    argv = readme_command("xlex compare")
    done = xlex(home, *argv[1:])
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()
            if re.match(r"\s*\d+\s+-?[0-9.]+", line)]
    times = [float(r[0]) for r in rows]
    assert times == [0.0, 60.0, 300.0, 600.0, 900.0, 1200.0]
    r_600 = float(rows[times.index(600.0)][1])
    assert r_600 > 0.9  # xlex and CM1 agree on the bubble at 10 min (docs/validation.md)
    for suffix in ("sections", "metrics"):
        assert (home / f"bubble_thpert_{suffix}.png").read_bytes().startswith(PNG)


def test_version(home):
    done = xlex(home, "--version")
    assert done.returncode == 0 and re.fullmatch(r"xlex \d+\.\d+\.\d+\S*", done.stdout.strip())


def test_a_typo_in_a_file_name_is_one_clear_line(home):
    done = xlex(home, "compare", "bubble.nc", "cm1")
    assert done.returncode == 2
    assert done.stderr.startswith("xlex compare: error:")
    assert "cm1" in done.stderr and "does not exist" in done.stderr
    assert "xlex datasets cm1-warm-bubble" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_first_command_is_not_warned_about_its_time_step(first_run):
    """The README's dt (12 s at 400 m) suits the flow its 5 K bubble makes (its
    Courant number peaks at 1.51 near 17 min, measured): no dt warning."""
    assert first_run.returncode == 0, first_run.stderr
    assert "suits the initial state" not in first_run.stderr
    assert "RuntimeWarning" not in first_run.stderr
