"""One table each for dimension names, units and solver names, read by every
module that needs them; and cf-xarray reads the grid of a contract Dataset
from the CF attributes those tables write (the contract's promise)."""

from __future__ import annotations

import inspect

import pytest

import xlex
from xlex import align, bench, cli, transforms
from xlex.core.dynamics import numerics, pressure
from xlex.io import cf, cm1, convert


def test_dimension_names_have_one_table():
    assert cf.SPATIAL_DIMS == ("zh", "zf", "yh", "yf", "xh", "xf")
    assert cf.AXIS_OF == {"zh": "z", "zf": "z", "yh": "y", "yf": "y", "xh": "x", "xf": "x"}
    assert convert.SPATIAL_DIMS is cf.SPATIAL_DIMS
    assert align.SPATIAL_DIMS is cf.SPATIAL_DIMS and transforms.AXIS_OF is cf.AXIS_OF
    assert cm1.CM1_COORDS == ("time", *cf.SPATIAL_DIMS)
    for name, dims in cm1.CM1_REQUIRED_FIELDS.items():
        assert dims is cf.VARIABLE_DIMS[name]
    for name, dims in cf.VARIABLE_DIMS.items():
        assert set(dims) <= set(cf.SPATIAL_DIMS), name


def test_units_have_one_table():
    for name, units in convert.EXPECTED_UNITS.items():
        assert units == cf.VARIABLE_ATTRS[name]["units"] == cf.units_of(name)
        assert units in cf.UNIT_ALIASES[units]
    assert set(cf.METRES) == {"m", "metre", "metres", "meter", "meters"}
    assert cf.LENGTH_UNITS["km"] == 1000.0


def test_solver_names_have_one_table(capsys):
    assert numerics.SOLVERS is pressure.SOLVERS
    assert inspect.signature(bench.run).parameters["solvers"].default is pressure.SOLVERS
    with pytest.raises(SystemExit):
        cli.main(["run", "--solver", "multigrid"])
    err = capsys.readouterr().err
    assert all(repr(name) in err for name in pressure.SOLVERS)


def test_cf_xarray_reads_the_grid_unaided():
    cf_xarray = pytest.importorskip("cf_xarray")
    assert cf_xarray
    ds = xlex.cases.warm_bubble(dx=2000.0, dz=1000.0)
    axes = {axis.upper(): sorted(d for d, a in cf.AXIS_OF.items() if a == axis)
            for axis in "zyx"}
    assert {k: sorted(v) for k, v in ds.cf.axes.items()} == {**axes, "T": ["time"]}
    for name in ("u", "v", "w", "th", "qv", "rho0", "pi0"):
        standard_name = cf.VARIABLE_ATTRS[name]["standard_name"]
        assert ds.cf.standard_names[standard_name] == [name]
        assert ds.cf[standard_name].dims[-3:] == cf.VARIABLE_DIMS[name][-3:]
