"""The integrate loop at the edge (issue 14 item 3): an output interval run as
several compiled chunks gives the records of one chunk bit for bit and moves the
progress bar after each; the bar shows the compile as such; a run that will be
long on a CPU is announced with an estimate."""

import types
import warnings

import numpy as np
import pytest
from fakes import solve_info

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
    big = fake_run(240, 240, 120, steps_per_output=200)
    with pytest.warns(RuntimeWarning, match=r"6,912,000 cells and 200 steps.*expect roughly "
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


# --------------------------------------------------------------------------- pressure solves
# issue 10 item 5: every output records the largest divergence its projections
# left; an unconverged solve or a Krylov breakdown is said once per run


def solve_report(residual, breakdown=False):
    """A ``make_step`` whose step warms th and reports pressure solves that left
    ``residual`` (and broke down when ``breakdown``), cheap to compile."""
    import dataclasses


    def make_step(grid, physics, dt):
        def step(s, base, params):
            return dataclasses.replace(s, th=s.th + 0.01), solve_info(
                s.th.dtype, iterations=2, residual=residual, breakdown=breakdown)
        return step
    return make_step


@pytest.mark.parametrize("precision, tolerance", [("float32", 1e-5), ("float64", 1e-10)])
def test_each_output_records_the_divergence_its_projections_left(precision, tolerance):
    ds0 = xlex.cases.warm_bubble(dx=2000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # converged solves say nothing
        out = ds0.lex.integrate("3min", dt=20.0, output_every="1min", precision=precision,
                                progress=False)
    residual = out["pressure_residual"]
    assert residual.dims == ("time",) and residual.dtype == np.dtype(precision)
    assert float(residual[0]) == 0.0  # no solve made the initial state
    assert (residual[1:] > 0).all() and (residual[1:] <= tolerance).all(), residual.values
    assert "relative residual" in residual.attrs["long_name"]


def test_solves_stopped_by_max_iterations_are_recorded_and_said_once():
    ds0 = xlex.cases.warm_bubble(dx=2000.0)
    with pytest.warns(RuntimeWarning) as said:
        out = ds0.lex.integrate("3min", dt=20.0, output_every="1min", precision="float64",
                                max_iterations=1, tolerance=1e-12, progress=False)
    messages = [str(w.message) for w in said if "pressure" in str(w.message)]
    assert len(messages) == 1, messages  # three intervals, one warning
    assert "max_iterations=1 before t = 60 s" in messages[0]
    assert "pressure_residual" in messages[0]
    assert (out["pressure_residual"][1:] > 1e-12).all()


def test_a_residual_above_the_tolerance_is_said_once(monkeypatch):
    monkeypatch.setattr(runner, "make_step", solve_report(3e-4))
    with pytest.warns(RuntimeWarning, match=r"relative residual of 0.0003, above the "
                                            r"tolerance 1e-05, before t = 60 s") as said:
        out = xlex.cases.warm_bubble(dx=2000.0).lex.integrate("2min", **RUN, progress=False)
    assert len([w for w in said if "pressure" in str(w.message)]) == 1
    np.testing.assert_allclose(out["pressure_residual"].values, [0, 3e-4, 3e-4], rtol=1e-6)


def test_a_krylov_breakdown_is_said(monkeypatch):
    monkeypatch.setattr(runner, "make_step", solve_report(0.5, breakdown=True))
    with pytest.warns(RuntimeWarning, match=r"pressure solve broke down .*before t = 60 s, "
                                            r"leaving a relative residual of 0.5") as said:
        xlex.cases.warm_bubble(dx=2000.0).lex.integrate("2min", **RUN, progress=False)
    assert len([w for w in said if "pressure" in str(w.message)]) == 1
