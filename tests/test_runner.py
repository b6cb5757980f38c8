"""The integrate loop at the edge (issue 14 item 3): an output interval run as
several compiled chunks gives the records of one chunk bit for bit and moves the
progress bar after each; the bar shows the compile as such; a run that will be
long on a CPU is announced with an estimate."""

import types
import warnings

import numpy as np
import pytest

import xlex
import xlex.runner as runner

RUN = dict(dt=20.0, output_every="1min", precision="float32")


class Bar:
    """Stands in for tqdm: records the descriptions and updates it is given."""

    made = []

    def __init__(self, *, total, desc, disable, **kwargs):
        self.total, self.events, self.disable = total, [("desc", desc)], disable
        Bar.made.append(self)

    def set_description(self, desc, refresh=True):
        self.events.append(("desc", desc))

    def update(self, n):
        self.events.append(("update", n))

    def unpause(self):
        pass

    def close(self):
        self.events.append(("close",))


@pytest.fixture
def bar(monkeypatch):
    Bar.made = []
    monkeypatch.setattr(runner, "tqdm", Bar)
    return Bar


def test_chunks_are_bit_for_bit_and_move_the_bar_within_an_interval(bar, monkeypatch):
    ds0 = xlex.cases.warm_bubble(dx=2000.0)  # 12 x 12 x 6: 3 steps per output
    whole = ds0.lex.integrate("2min", **RUN)
    assert [e for e in bar.made[0].events if e[0] == "update"] == [("update", 3)] * 2
    monkeypatch.setattr(runner, "plan_chunks", lambda run, s=None: runner.ChunkPlan(1, 3))
    split = ds0.lex.integrate("2min", **RUN)
    events = bar.made[1].events
    assert [e for e in events if e[0] == "update"] == [("update", 1)] * 6  # 3 per interval
    for name in whole.data_vars:
        np.testing.assert_array_equal(split[name].values, whole[name].values, err_msg=name)
    assert split.attrs["xlex_status"] == whole.attrs["xlex_status"] == "complete"


def test_the_bar_says_compiling_until_the_first_chunk_is_compiled(bar):
    ds0 = xlex.cases.warm_bubble(dx=2000.0)
    ds0.lex.integrate("1min", **RUN)
    events = bar.made[0].events
    assert events[0][0] == "desc" and events[0][1].endswith("compiling")
    first_update = events.index(("update", 3))
    descs = [e[1] for e in events[:first_update] if e[0] == "desc"]
    assert not descs[-1].endswith("compiling") and descs[-1].startswith("xlex 12x12x6")


def fake_run(nx, ny, nz, *, steps_per_output=60, n_outputs=1, batch=(), dtype=np.float32):
    grid = types.SimpleNamespace(nx=nx, ny=ny, nz=nz)
    return types.SimpleNamespace(inputs=types.SimpleNamespace(grid=grid), batch_shape=batch,
                                 dtype=np.dtype(dtype), steps_per_output=steps_per_output,
                                 n_outputs=n_outputs)


def test_chunks_take_about_the_progress_interval():
    # a 100 m warm bubble (240 x 240 x 120) costs seconds per step on a CPU: one step a chunk
    big = fake_run(240, 240, 120)
    seconds = runner.estimated_seconds_per_step(big)
    assert seconds > runner.PROGRESS_SECONDS
    assert runner.plan_chunks(big, seconds) == runner.ChunkPlan(steps=1, calls=60)
    # the chunk is the largest divisor of the interval that fits in the progress interval
    mid = fake_run(60, 60, 30)
    k = runner.plan_chunks(mid, 0.3)
    assert k.steps * k.calls == 60 and k.steps * 0.3 <= runner.PROGRESS_SECONDS
    assert k == runner.ChunkPlan(steps=6, calls=10)
    # unknown speed (a GPU) or a small grid: one chunk per output interval, as before
    assert runner.plan_chunks(mid, None) == runner.ChunkPlan(steps=60, calls=1)
    assert runner.plan_chunks(fake_run(12, 12, 6), 1e-4) == runner.ChunkPlan(60, 1)


def test_a_long_cpu_run_is_announced_with_an_estimate():
    big = fake_run(240, 240, 120, steps_per_output=60)
    with pytest.warns(RuntimeWarning, match=r"6,912,000 cells and 60 steps.*expect roughly "
                                            r"\d+ min.*estimate.*docs/performance.md"):
        runner._warn_cost(big, runner.estimated_seconds_per_step(big))
    members = fake_run(60, 60, 30, steps_per_output=5, n_outputs=240, batch=(10,))
    with pytest.warns(RuntimeWarning, match="1,080,000 cells and 1200 steps"):
        runner._warn_cost(members, runner.estimated_seconds_per_step(members))
    small = fake_run(60, 60, 30, steps_per_output=5, n_outputs=20)  # the README's run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner._warn_cost(small, runner.estimated_seconds_per_step(small))
        runner._warn_cost(big, None)  # no estimate off the CPU
