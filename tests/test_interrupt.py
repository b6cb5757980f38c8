"""Ctrl-C in ``xlex run`` (issue 15 item 3): at import, while compiling and in
the time loop the command exits 130 with one line saying what was saved, no
traceback and no crash, and the store is marked interrupted. Each test drives
the console script in a subprocess and sends it SIGINT at a chosen moment."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import xlex

from xlex.core.errors import XlexError
from xlex.io.store import complete_records, open_store

SCRIPT = Path(sys.executable).parent / "xlex"
pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason=f"no console script at {SCRIPT}")

# a 12 x 12 x 6 grid: compiles in a few seconds, then about 30 steps per second
RUN = ["run", "--dx", "2000", "--dt", "20", "--output-every", "1min"]
MESSAGE = re.compile(r"^xlex run: interrupted; (.*)$")


class Command:
    """``xlex`` in a subprocess, its stderr read as it comes."""

    def __init__(self, tmp_path, *args):
        env = dict(os.environ, XLEX_COMPILATION_CACHE="0")  # a real compile every time
        self.proc = subprocess.Popen([str(SCRIPT), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        self.err = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for chunk in iter(lambda: self.proc.stderr.read(1), ""):
            self.err.append(chunk)

    def wait_for(self, ready, timeout=60.0):
        t0 = time.monotonic()
        while not ready():
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.stderr}"
            assert time.monotonic() - t0 < timeout, f"not ready in {timeout} s: {self.stderr}"
            time.sleep(0.02)

    def interrupt(self):
        self.proc.send_signal(signal.SIGINT)
        out = self.proc.stdout.read()
        self.proc.wait(timeout=60)
        self.reader.join(timeout=10)
        return self.proc.returncode, out, self.stderr

    @property
    def stderr(self):
        return "".join(self.err)


def check_stopped(code, out, err):
    """Exit 130, no traceback, and the message as the last line of stderr."""
    assert code == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "wrote" not in out
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    match = MESSAGE.match(last)
    assert match, err
    return match.group(1)


def check_store(path, said):
    """The store is marked interrupted and holds as many records as the message says."""
    n = complete_records(path)
    assert f"holds {n} complete record(s)" in said, said
    assert open_store(path, load=False).attrs["xlex_status"] == "interrupted"
    assert f"xlex run --resume {path.name}" in said
    return n


def records_so_far(path):
    """Complete records of a store being written (0 while a read lands in a write)."""
    try:
        return complete_records(path) if path.exists() else 0
    except XlexError:
        return 0


# the handler must be in place before `import xlex` imports JAX, which only
# xlex/__init__.py can do (interrupt.install_for_command, first thing)
HOOKED = "install_for_command" in (Path(xlex.__file__).read_text())


@pytest.mark.xfail(not HOOKED, strict=True, reason="xlex/__init__.py does not yet call "
                   "xlex.interrupt.install_for_command() before its imports")
def test_ctrl_c_while_importing(tmp_path):
    cmd = Command(tmp_path, *RUN, "--duration", "2min", "-o", "run.nc")
    time.sleep(0.4)  # python is up, `import jax` is under way (it takes seconds)
    said = check_stopped(*cmd.interrupt())
    assert said == "nothing was written"
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_compiling(tmp_path):
    path = tmp_path / "run.nc"
    cmd = Command(tmp_path, *RUN, "--duration", "10min", "-o", "run.nc")
    # the initial record is written before the time step is compiled
    cmd.wait_for(lambda: path.exists() and "compiling" in cmd.stderr)
    time.sleep(0.5)
    assert "compiling" in cmd.stderr.replace("\r", "\n").splitlines()[-1]
    said = check_stopped(*cmd.interrupt())
    assert check_store(path, said) == 1


def test_ctrl_c_in_the_time_loop(tmp_path):
    path = tmp_path / "run.nc"
    cmd = Command(tmp_path, *RUN, "--duration", "60min", "-o", "run.nc")
    cmd.wait_for(lambda: records_so_far(path) >= 2)
    said = check_stopped(*cmd.interrupt())
    n = check_store(path, said)
    assert 2 <= n < 61
