"""Ensembles from the case builders: a list for a parameter gives a ``member`` dim;
integrated at once (vmapped), each member is the run of that member alone."""

import numpy as np
import pytest

import xlex
from xlex.core.errors import OptionError, OptionTypeError

COARSE = {"dx": 2000.0}  # 12 x 12 x 6 cells: cheap, and the 2 km bubble still moves
THETA_C = [1.0, 3.0, 5.0]
FIELDS = ["u", "v", "w", "th", "qv", "pipert"]


@pytest.fixture(scope="module")
def ensemble():
    return xlex.cases.warm_bubble(theta_c=THETA_C, **COARSE)


def test_a_list_gives_a_member_dim_with_the_values(ensemble):
    assert ensemble.sizes["member"] == 3
    assert ensemble["th"].dims == ("time", "member", "zh", "yh", "xh")
    assert ensemble["th0"].dims == ("zh",)  # one base state, shared
    assert ensemble["theta_c"].dims == ("member",)
    np.testing.assert_array_equal(ensemble["theta_c"].values, THETA_C)
    np.testing.assert_array_equal(ensemble.attrs["case_theta_c"], THETA_C)
    assert "theta_c = 1, 3, 5 K" in ensemble.attrs["title"]
    for i, theta_c in enumerate(THETA_C):
        alone = xlex.cases.warm_bubble(theta_c=theta_c, **COARSE)
        for name in [*FIELDS, "thpert", "thrho"]:
            np.testing.assert_array_equal(ensemble[name].isel(member=i).values,
                                          alone[name].values)


def test_the_ensemble_integrates_as_its_members_alone(ensemble):
    run = {"dt": 12.0, "output_every": 12.0, "progress": False, "precision": "float64"}
    out = ensemble.lex.integrate(24.0, **run)
    assert out["th"].dims == ("time", "member", "zh", "yh", "xh")
    for i, theta_c in enumerate(THETA_C):
        alone = xlex.cases.warm_bubble(theta_c=theta_c, **COARSE).lex.integrate(24.0, **run)
        for name in FIELDS:
            want = alone[name].values
            np.testing.assert_allclose(out[name].isel(member=i).values, want, rtol=0,
                                       atol=1e-12 * max(1.0, float(np.abs(want).max())),
                                       err_msg=f"member {i}, {name}")
    # the members differ: the test would not see members swapped or shared otherwise
    assert float(np.abs(out["w"].isel(member=2) - out["w"].isel(member=0)).max()) > 1e-3


def test_lists_of_the_same_length_pair_up_member_by_member():
    ens = xlex.cases.warm_bubble(theta_c=(2.0, 4.0), x_centre=np.array([10000.0, 14000.0]),
                                 **COARSE)
    np.testing.assert_array_equal(ens["x_centre"].values, [10000.0, 14000.0])
    second = xlex.cases.warm_bubble(theta_c=4.0, x_centre=14000.0, **COARSE)
    np.testing.assert_array_equal(ens["th"].isel(member=1).values, second["th"].values)


def test_the_other_builders_take_lists():
    cbl = xlex.cases.convective_boundary_layer(dx=500.0, dz=250.0, seed=[0, 1],
                                               u=[1.0, 2.0])
    assert cbl.sizes["member"] == 2
    np.testing.assert_array_equal(cbl["seed"].values, [0, 1])
    # 'u' is a field already: the wind's coordinate takes the attribute's name
    np.testing.assert_array_equal(cbl["case_u"].values, [1.0, 2.0])
    assert float(np.abs(cbl["th"].isel(member=0) - cbl["th"].isel(member=1)).max()) > 0
    dc = xlex.cases.density_current(dx=1600.0, temperature_perturbation=[-15.0, -10.0])
    assert dc["thpert"].isel(member=1).min() > dc["thpert"].isel(member=0).min()


@pytest.mark.parametrize("options, kind, words", [
    ({"theta_c": []}, OptionError, ["theta_c", "no ensemble members"]),
    ({"theta_c": [1.0, "a"]}, OptionTypeError, ["theta_c[1]", "must be a number"]),
    ({"theta_c": [1.0, True]}, OptionTypeError, ["theta_c[1]", "bool"]),
    ({"theta_c": [1.0, 2.0, 3.0], "x_centre": [1e4, 1.2e4]}, OptionError,
     ["theta_c has 3", "x_centre has 2", "member by member", "same length"]),
    ({"theta_c": np.ones((2, 2))}, OptionError, ["1-D", "(2, 2)"]),
    ({"theta_c": [1.0, -1.0]}, OptionError, ["ensemble member 1", "theta_c=-1.0", ">= 0"]),
    ({"dx": [1000.0, 2000.0]}, OptionError, ["dx cannot vary", "grid", "theta_c"]),
    ({"theta0": [300.0, 301.0], "relative_humidity": [0.1, 0.2]}, OptionError,
     ["theta0, relative_humidity cannot vary", "base state"]),
])
def test_bad_ensembles_are_refused_with_the_reason(options, kind, words):
    opts = {**COARSE, **options}
    with pytest.raises(kind) as info:
        xlex.cases.warm_bubble(**opts)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_keyword_checks_still_hold():
    with pytest.raises(OptionTypeError, match="keyword arguments only"):
        xlex.cases.warm_bubble([1.0, 2.0])
    with pytest.raises(OptionTypeError, match="unknown option"):
        xlex.cases.warm_bubble(theta=[1.0, 2.0])
