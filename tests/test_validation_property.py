"""Property tests of the input checks: any malformed Dataset, option or case-builder
argument is refused with an :class:`xlex.XlexError` that names the culprit, before
anything is compiled and without a JAX traceback.

The malformed inputs are built by hypothesis from a valid 12 x 12 x 6 warm bubble.
``xlex.runner.make_step`` is replaced for the whole module by a function that fails
the test if it is ever called.
"""

import math
import re
import traceback

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xlex
import xlex.options
import xlex.runner
from xlex.core.errors import DatasetError, OptionError, OptionTypeError, XlexError
from xlex.io.convert import QV_ROUNDOFF, dataset_to_inputs

SETTINGS = settings(deadline=None, max_examples=40, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
FEW = settings(SETTINGS, max_examples=20)

RUN = dict(dt=20.0, output_every="1min", precision="float64", progress=False)
REQUIRED = ("u", "v", "w", "th", "qv", "th0", "qv0")
SPATIAL = ("zh", "zf", "yh", "yf", "xh", "xf")
PARTNER = {"zh": "zf", "zf": "zh", "yh": "yf", "yf": "yh", "xh": "xf", "xf": "xh"}
FIELDS = ("u", "v", "w", "th", "qv", "pipert", "th0", "qv0", "pi0")

BASE = xlex.cases.warm_bubble(theta_c=5.0, dx=2000.0)
#: The keyword options of integrate: the shorthands, the Physics slots and ``physics``.
KNOWN_OPTIONS = set(xlex.options.SHORTHANDS) | set(xlex.options.SLOTS) | {"physics"}


def never_compile(*args, **kwargs):
    raise AssertionError("xlex.runner.make_step was called: the bad input got through to "
                         "the model")


@pytest.fixture(scope="module", autouse=True)
def no_model():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(xlex.runner, "make_step", never_compile)
        yield


def names_in(name, message):
    """``name`` appears in ``message`` as a whole word (so 'th' is not found in 'the' or
    'th0')."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message)


def assert_refused(call, *names, kind=XlexError):
    """``call()`` raises a ``kind`` (an XlexError), whose message names one of ``names``,
    with no JAX in the message or the traceback."""
    try:
        call()
    except BaseException as err:  # noqa: B036 -- judge every exception, not just some
        if not isinstance(err, XlexError):
            raise AssertionError(f"not an XlexError: {type(err).__name__}: {err}") from err
        assert isinstance(err, kind), f"{type(err).__name__} is not a {kind.__name__}: {err}"
        message = str(err)
        assert "jax" not in message.lower(), message
        frames = [f.filename for f in traceback.extract_tb(err.__traceback__)]
        assert not [f for f in frames if "/jax/" in f or "/jaxlib/" in f], frames
        assert any(names_in(n, message) for n in names), (
            f"the message names none of {names}: {message}")
        return err
    raise AssertionError(f"no error: the input was accepted (expected one naming {names})")


def integrate(ds, duration="2min", **kwargs):
    return xlex.runner.integrate(ds, duration, **{**RUN, **kwargs})


def test_the_base_dataset_is_valid():
    inputs = dataset_to_inputs(BASE)
    assert (inputs.grid.nx, inputs.grid.ny, inputs.grid.nz) == (12, 12, 6)
    # ...and integrate gets as far as building the model
    with pytest.raises(AssertionError, match="make_step was called"):
        integrate(BASE)


# --------------------------------------------------------------------------- Datasets


def index_into(da):
    """A strategy of an index tuple into ``da``."""
    return st.tuples(*[st.integers(0, n - 1) for n in da.shape])


def with_value(ds, name, index, value):
    arr = ds[name].values.copy()
    arr[index] = value
    return ds.assign({name: (ds[name].dims, arr, ds[name].attrs)})


@st.composite
def missing_variable(draw):
    name = draw(st.sampled_from(REQUIRED))
    return BASE.drop_vars(name), (repr(name),)


@st.composite
def renamed_dim(draw):
    dim = draw(st.sampled_from(SPATIAL))
    new = draw(st.sampled_from(["x", "y", "z", "lon", "lat", "lev", "nx", dim.upper(),
                                dim + "_1"]))
    return BASE.rename({dim: new}), (dim,)


@st.composite
def truncated_dim(draw):
    dim = draw(st.sampled_from(SPATIAL))
    n = BASE.sizes[dim]
    cut = draw(st.integers(1, n - 2))
    sl = draw(st.sampled_from([slice(0, n - cut), slice(cut, None)]))
    # a mismatch of a centre and its face dim is the fault of either
    return BASE.isel({dim: sl}), (dim, PARTNER[dim])


@st.composite
def non_finite(draw):
    name = draw(st.sampled_from(FIELDS))
    index = draw(index_into(BASE[name]))
    value = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return with_value(BASE, name, index, value), (name,)


@st.composite
def negative_humidity(draw):
    name = draw(st.sampled_from(["qv", "qv0"]))
    index = draw(index_into(BASE[name]))
    if draw(st.booleans()):
        # not written by xlex: any negative value is refused
        ds = BASE.copy()
        ds.attrs = {k: v for k, v in BASE.attrs.items() if k != "model"}
        value = -draw(st.floats(1e-12, 1.0))
    else:
        # written by xlex (as BASE is): round-off down to -QV_ROUNDOFF is set to 0
        ds = BASE
        value = -draw(st.floats(QV_ROUNDOFF, 1.0, exclude_min=True))
    return with_value(ds, name, index, value), (name,)


@st.composite
def non_positive_theta(draw):
    name = draw(st.sampled_from(["th", "th0"]))
    index = draw(index_into(BASE[name]))
    value = draw(st.floats(-400.0, 0.0))
    return with_value(BASE, name, index, value), (name,)


#: The top face zf[-1] is left out here: see test_top_face_is_checked.
NON_UNIFORM_POINTS = [(c, i) for c in SPATIAL for i in range(BASE.sizes[c])
                      if (c, i) != ("zf", BASE.sizes["zf"] - 1)]


@st.composite
def non_uniform_coordinate(draw):
    name, i = draw(st.sampled_from(NON_UNIFORM_POINTS))
    shift = draw(st.floats(0.01, 0.45)) * draw(st.sampled_from([-1.0, 1.0])) * 2000.0
    values = BASE[name].values.copy()
    values[i] += shift
    return BASE.assign_coords({name: (name, values, BASE[name].attrs)}), (name,)


@st.composite
def coordinate_in_km(draw):
    name = draw(st.sampled_from(SPATIAL))
    units = draw(st.sampled_from(["km", "kilometres", "ft", "degrees_east"]))
    values = BASE[name].values / (1000.0 if units == "km" else 1.0)
    attrs = {**BASE[name].attrs, "units": units}
    return BASE.assign_coords({name: (name, values, attrs)}), (name,)


@st.composite
def variable_in_wrong_units(draw):
    name, units = draw(st.sampled_from([
        ("u", "km h-1"), ("v", "knots"), ("w", "cm s-1"), ("th", "degC"), ("th", "degF"),
        ("qv", "g kg-1"), ("qv", "g/kg"), ("th0", "degC"), ("qv0", "g kg-1"),
        ("pi0", "hPa")]))  # pipert: see test_pipert_units_are_checked
    da = BASE[name].copy()
    da.attrs = {**da.attrs, "units": units}
    return BASE.assign({name: da}), (name,)


@st.composite
def w_on_a_wall(draw):
    wall = draw(st.sampled_from([0, BASE.sizes["zf"] - 1]))
    j = draw(st.integers(0, BASE.sizes["yh"] - 1))
    i = draw(st.integers(0, BASE.sizes["xh"] - 1))
    value = draw(st.floats(1e-6, 50.0)) * draw(st.sampled_from([-1.0, 1.0]))
    return with_value(BASE, "w", (0, wall, j, i), value), ("w",)


@st.composite
def transposed_field(draw):
    name = draw(st.sampled_from(["u", "v", "w", "th", "qv"]))
    dims = BASE[name].dims
    order = draw(st.permutations(dims[1:]).filter(lambda p: tuple(p) != dims[1:]))
    return BASE.assign({name: BASE[name].transpose(dims[0], *order)}), (name,)


MALFORMED = st.one_of(missing_variable(), renamed_dim(), truncated_dim(), non_finite(),
                      negative_humidity(), non_positive_theta(), non_uniform_coordinate(),
                      coordinate_in_km(), variable_in_wrong_units(), w_on_a_wall(),
                      transposed_field())


@SETTINGS
@given(MALFORMED)
def test_malformed_datasets_are_refused_by_integrate(case):
    ds, names = case
    assert_refused(lambda: integrate(ds), *names, kind=DatasetError)


@SETTINGS
@given(case=MALFORMED)
def test_malformed_datasets_are_refused_by_the_accessor_with_a_store(case, tmp_path_factory):
    ds, names = case
    folder = tmp_path_factory.mktemp("refused")
    store = folder / "out.nc"
    assert_refused(lambda: ds.lex.integrate("2min", store=store, **RUN), *names,
                   kind=DatasetError)
    assert not store.exists()
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("strategy", [
    missing_variable, renamed_dim, truncated_dim, non_finite, negative_humidity,
    non_positive_theta, non_uniform_coordinate, coordinate_in_km, variable_in_wrong_units,
    w_on_a_wall, transposed_field])
def test_each_kind_of_malformation(strategy):
    """Every strategy on its own (so none is starved by ``one_of``)."""
    @FEW
    @given(strategy())
    def check(case):
        ds, names = case
        assert_refused(lambda: dataset_to_inputs(ds), *names, kind=DatasetError)
    check()


@pytest.mark.parametrize("thing", [None, 1.0, "bubble.nc", {"th": 1}, BASE["th"]])
def test_not_a_dataset(thing):
    assert_refused(lambda: integrate(thing), "Dataset", kind=DatasetError)


def test_the_input_is_left_alone():
    before = BASE.copy(deep=True)
    for bad in (BASE.drop_vars("th"), with_value(BASE, "qv", (0, 0, 0, 0), -1.0)):
        with pytest.raises(DatasetError):
            integrate(bad)
    xr.testing.assert_identical(BASE, before)


def test_top_face_is_checked():
    values = BASE["zf"].values.copy()
    values[-1] += 700.0
    bad = BASE.assign_coords(zf=("zf", values, BASE["zf"].attrs))
    assert_refused(lambda: dataset_to_inputs(bad), "zf", kind=DatasetError)


def test_pipert_units_are_checked():
    da = BASE["pipert"].copy()
    da.attrs = {**da.attrs, "units": "Pa"}
    assert_refused(lambda: dataset_to_inputs(BASE.assign(pipert=da)), "pipert",
                   kind=DatasetError)


# --------------------------------------------------------------------------- options


TIME_OPTIONS = ("dt", "duration", "output_every")

BAD_DURATIONS = st.one_of(
    st.floats(max_value=0.0, allow_nan=False),
    st.integers(max_value=0),
    st.sampled_from([math.nan, math.inf, -math.inf, np.float64(np.nan), np.timedelta64(-5, "s"),
                     np.timedelta64(0, "s"), np.timedelta64("NaT")]),
    st.sampled_from([None, True, False, [20.0], (20.0,), {"s": 20}, np.array([20.0]), b"20",
                     object(), 20j]),
    st.sampled_from(["", "  ", "abc", "-5min", "5 parsecs", "nan", "inf", "1e400", "0",
                     "0min", "min", "20min!", "1h -30min", "20 min ago"]),
)


@SETTINGS
@given(option=st.sampled_from(TIME_OPTIONS), value=BAD_DURATIONS)
def test_bad_durations_are_refused(option, value):
    args = {"duration": "2min", "dt": 20.0, "output_every": "1min", option: value}
    assert_refused(lambda: xlex.runner.integrate(
        BASE, args["duration"], dt=args["dt"], output_every=args["output_every"],
        progress=False), option)


@SETTINGS
@given(dt=st.integers(1, 120), m=st.integers(0, 6), r=st.floats(0.05, 0.95))
def test_dt_must_divide_output_every(dt, m, r):
    every = dt * (m + r)
    err = assert_refused(lambda: integrate(BASE, every * 2, dt=float(dt),
                                           output_every=float(every)), "dt", "output_every")
    assert names_in("dt", str(err)) and names_in("output_every", str(err))


@SETTINGS
@given(every=st.integers(1, 600), m=st.integers(0, 5), r=st.floats(0.05, 0.95))
def test_output_every_must_divide_duration(every, m, r):
    duration = every * (m + r)
    err = assert_refused(lambda: integrate(BASE, float(duration), dt=float(every),
                                           output_every=float(every)),
                         "duration", "output_every")
    assert names_in("duration", str(err)) and names_in("output_every", str(err))


#: Bad values of the shorthand options (and precision), by option.
BAD_OPTIONS = {
    "solver": st.one_of(st.text(max_size=12).filter(lambda s: s not in ("pcg", "bicgstab")),
                        st.sampled_from(["PCG", "cg", "fft", "bicgstab "])),
    "precision": st.one_of(
        st.text(max_size=12).filter(lambda s: s not in ("float32", "float64")),
        st.sampled_from(["float16", "double", "bfloat16", "f8", "Float64"])),
    "tolerance": st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0),
                           st.just(math.nan)),
    "max_iterations": st.one_of(st.integers(max_value=0), st.sampled_from([1.5, 10.0])),
    "vertical_order": st.one_of(st.integers().filter(lambda n: n not in (3, 5)),
                                st.just(True)),
    "momentum_advection": st.text(max_size=12).filter(lambda s: s not in ("weno5", "upwind5")),
    "weno_epsilon": st.one_of(st.floats(max_value=0.0), st.just(math.nan),
                              st.just(math.inf)),
    "weno_regularisation": st.text(max_size=12).filter(
        lambda s: s not in ("relative", "absolute")),
    "positive_moisture": st.sampled_from(["yes", "False", 1, 0, 1.0]),
    "coriolis": st.sampled_from([math.nan, math.inf, -math.inf]),
    "geostrophic_u": st.sampled_from([math.nan, math.inf, -math.inf]),
    "geostrophic_v": st.sampled_from([math.nan, math.inf, -math.inf]),
}
WRONG_TYPES = st.sampled_from([None, [1], (1,), {"a": 1}, object(), b"x", 1j])
#: Options whose default is None (a valid value) or that take any int-like value.
NONE_ALLOWED = {"tolerance", "max_iterations"}

#: Bad values of the options of the subgrid and surface schemes, with the scheme that
#: takes them (so that the value itself is judged, not the missing scheme).
SCHEME_OPTIONS = {
    "cs": ([{"sgs": "smagorinsky"}], [-0.1, 1.5, math.nan, math.inf, "0.2", None]),
    "prandtl": ([{"sgs": "smagorinsky"}, {"sgs": "dynamic"}],
                [0.0, -1.0, math.nan, math.inf, "1/3", None]),
    "stability": ([{"sgs": "smagorinsky"}, {"sgs": "dynamic"}], ["yes", 1, None, [True]]),
    "filter_ratio": ([{"sgs": "dynamic"}], [1.0, 0.5, 11.0, math.nan, "2", None]),
    "nu": ([{"sgs": "constant"}], [-1.0, math.nan, math.inf, "75", None]),
    "kappa": ([{"sgs": "constant", "nu": 10.0}], [-1.0, math.nan, math.inf, "75"]),
    "surface_temperature": ([{"surface": "bulk"}], [0.0, -5.0, math.nan, math.inf, "300",
                                                    None]),
    "surface_potential_temperature": ([{"surface": "bulk"}],
                                      [0.0, -5.0, math.nan, math.inf, "300", None]),
    "roughness_length": ([{"surface": "bulk", "surface_temperature": 300.0}],
                         [0.0, -0.1, math.nan, math.inf, "0.1", None, 900.0]),
    "scalar_roughness_length": ([{"surface": "bulk", "surface_temperature": 300.0}],
                                [0.0, -0.1, math.nan, "0.1", 900.0]),
    "moisture_availability": ([{"surface": "bulk", "surface_temperature": 300.0}],
                              [-0.1, 1.5, math.nan, "1", None]),
    "minimum_wind_speed": ([{"surface": "bulk", "surface_temperature": 300.0}],
                           [0.0, -1.0, math.nan, math.inf, "1", None]),
}


def test_every_shorthand_has_bad_values():
    assert set(xlex.options.SHORTHANDS) == (set(BAD_OPTIONS) | set(SCHEME_OPTIONS)) - {
        "precision"}


@SETTINGS
@given(data=st.data(), option=st.sampled_from(sorted(BAD_OPTIONS)))
def test_bad_model_options_are_refused(data, option):
    value = data.draw(st.one_of(BAD_OPTIONS[option], WRONG_TYPES.filter(
        lambda v: not (v is None and option in NONE_ALLOWED))), label=option)
    assert_refused(lambda: integrate(BASE, **{option: value}), option)


@SETTINGS
@given(data=st.data())
def test_bad_subgrid_options_are_refused(data):
    option, value = data.draw(st.one_of(
        st.tuples(st.just("sgs"), st.text(max_size=12).filter(
            lambda s: s not in ("none", "smagorinsky", "dynamic", "constant"))),
        st.tuples(st.just("cs"), st.sampled_from([-0.1, math.nan, math.inf, "0.2", None])),
        st.tuples(st.just("prandtl"), st.sampled_from([0.0, -1.0, math.nan, "1/3", None])),
        st.tuples(st.just("stability"), st.sampled_from(["yes", 1, None, [True]]))))
    # the options of a scheme are judged with the scheme on
    scheme = {} if option == "sgs" else {"sgs": "smagorinsky"}
    assert_refused(lambda: integrate(BASE, **scheme, **{option: value}), option)


@SETTINGS
@given(data=st.data(), option=st.sampled_from(sorted(SCHEME_OPTIONS)))
def test_bad_scheme_options_are_refused(data, option):
    schemes, values = SCHEME_OPTIONS[option]
    scheme = data.draw(st.sampled_from(schemes), label="scheme")
    value = data.draw(st.sampled_from(values), label=option)
    assert_refused(lambda: integrate(BASE, **scheme, **{option: value}), option)


@pytest.mark.parametrize("option", sorted(SCHEME_OPTIONS))
def test_a_scheme_option_without_its_scheme_is_refused(option):
    good = {"cs": 0.2, "prandtl": 0.5, "stability": False, "filter_ratio": 2.0,
            "nu": 10.0, "kappa": 10.0,
            "surface_temperature": 300.0, "surface_potential_temperature": 300.0,
            "roughness_length": 0.1, "scalar_roughness_length": 0.01,
            "moisture_availability": 0.5, "minimum_wind_speed": 0.5}
    assert_refused(lambda: integrate(BASE, **{option: good[option]}), option)


@SETTINGS
@given(name=st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True))
def test_unknown_options_are_refused(name):
    signature = {"self", "ds", "duration", "dt", "output_every", "solver", "precision", "progress",
                 "store", "overwrite", "physics"}
    if name in KNOWN_OPTIONS | signature:
        return
    assert_refused(lambda: integrate(BASE, **{name: 1}), name, kind=OptionTypeError)
    assert_refused(lambda: BASE.lex.integrate("2min", **RUN, **{name: 1.0}), name,
                   kind=OptionTypeError)


def test_a_misspelt_option():
    err = assert_refused(lambda: integrate(BASE, tolerence=1e-6), "tolerence",
                         kind=OptionTypeError)
    assert names_in("tolerance", str(err))  # the message lists the real ones


def test_absurdly_small_dt():
    assert_refused(lambda: integrate(BASE, dt=1e-320), "dt")


# --------------------------------------------------------------------------- case builder


POSITIVE = ("dx", "dy", "dz", "x_length", "y_length", "z_length", "x_radius", "y_radius",
            "z_radius", "theta0", "surface_pressure")
ANY_SIGN = ("x_centre", "y_centre", "z_centre")
FRACTION = ("theta_c", "relative_humidity")  # >= 0 (relative_humidity also <= 1)

NOT_NUMBERS = st.sampled_from(["1", "2000", "abc", "", b"1", [1.0], (1.0,), {"a": 1},
                               object(), True, False, 1j, np.array([1.0])])
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf, np.float64(np.nan)])


def bad_case_value(keyword):
    strategies = [NOT_NUMBERS, NON_FINITE]
    if keyword in POSITIVE:
        strategies += [st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
                       st.integers(max_value=0)]
    elif keyword in FRACTION:
        strategies += [st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
                       st.integers(max_value=-1)]
        if keyword == "relative_humidity":
            strategies += [st.floats(min_value=1.000001, allow_infinity=False)]
    if keyword not in ("dy", "dz"):  # None means "as dx" there
        strategies += [st.none()]
    return st.one_of(*strategies)


@SETTINGS
@given(data=st.data(), keyword=st.sampled_from(POSITIVE + ANY_SIGN + FRACTION))
def test_bad_case_arguments_are_refused(data, keyword):
    value = data.draw(bad_case_value(keyword), label=keyword)
    assert_refused(lambda: xlex.cases.warm_bubble(**{"dx": 2000.0, keyword: value}), keyword)


@pytest.mark.parametrize("keyword", POSITIVE + ANY_SIGN + FRACTION)
def test_type_errors_are_option_type_errors(keyword):
    err = assert_refused(lambda: xlex.cases.warm_bubble(**{"dx": 2000.0, keyword: "abc"}),
                         keyword, kind=OptionTypeError)
    assert isinstance(err, TypeError)


@pytest.mark.parametrize("value", ["no", None, 0.5])
def test_keep_relative_humidity_must_be_a_bool(value):
    assert_refused(lambda: xlex.cases.warm_bubble(dx=2000.0, keep_relative_humidity=value),
                   "keep_relative_humidity", kind=OptionTypeError)


@pytest.mark.parametrize("keyword", ["dx", "dz"])
def test_a_spacing_that_does_not_divide_the_domain(keyword):
    assert_refused(lambda: xlex.cases.warm_bubble(**{"dx": 2000.0, keyword: 7.0}), keyword,
                   kind=OptionError)


def test_unknown_case_keyword():
    assert_refused(lambda: xlex.cases.warm_bubble(dx=2000.0, theta_C=5.0), "theta_C",
                   kind=OptionTypeError)
