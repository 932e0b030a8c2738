"""Fuzzing the parsers of user input: targets files, calibration configurations, --set and --bound.

Property of every parser: for any input it either returns a valid object or raises the project's
own error (``EstimationError`` or the model's ``ModelError``), never another exception and never a
silently wrong value. The structured generators write mostly valid input from known values (names
from ``PARAM_NAMES`` and values inside ``DOMAINS``) and check that the parser returns exactly what
was written; the rest are known corruptions that must be refused. Each such test counts its valid
and refused cases and asserts their shares, so that a generator cannot silently degrade into one
that only produces refusals. 2,500 generated cases in all (see ``fuzz``), derandomised so that CI
sees the same cases every run.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import math
import string
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from estimation.msm import config as calibration
from estimation.msm import CalibrationConfig
from estimation.cli import parse_assignments
from estimation.errors import ConfigError, EstimationError, TargetsError
from estimation.msm.parameters import SEARCH_BOX, parse_bound
from estimation.msm.targets import ALIASES, load_targets, parse_csv, parse_toml
from jaxmodel import BASELINE, DOMAINS, MOMENT_NAMES, PARAM_NAMES, PRECISIONS, SPECS, InvalidParameterError, ModelError
from jaxmodel import baseline as model_baseline


def fuzz(n: int) -> settings:
    """n derandomised cases without deadline or example database (the same cases on every run)."""
    return settings(max_examples=n, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


def assert_shares(counts: collections.Counter, valid: float, refused: float) -> None:
    """At least ``valid`` of the cases were valid (and accepted) and at least ``refused`` refused."""
    total = sum(counts.values())
    assert total > 0
    assert counts["accepted"] >= valid * total, f"only {counts['accepted']} of {total} cases valid: {dict(counts)}"
    assert counts["refused"] >= refused * total, f"only {counts['refused']} of {total} cases refused: {dict(counts)}"


# ---------------------------------------------------------------------------------------------
# Targets files

names = st.sampled_from(MOMENT_NAMES + tuple(ALIASES) + ("gini", "M1", " cv_change ", "", "m7"))
number_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-1, 1).map(lambda x: f"{x:.3g}"),
    st.sampled_from(["", " ", "abc", "1e400", "-0", "0", "1,5", "0x10", "1_000", "nan", "-inf", "TRUE"]),
)
source_text = st.text(string.ascii_letters + " ", max_size=8)
junk_rows = st.lists(st.tuples(names, number_text, number_text, source_text), min_size=0, max_size=9)


@st.composite
def mutated_rows(draw):
    """Six valid rows in any order, then 0-2 mutations (bad name or number, row dropped or repeated)."""
    order = draw(st.permutations(MOMENT_NAMES))
    good = st.floats(-10, 10, allow_nan=False).map(repr)
    positive = st.floats(1e-6, 10).map(repr)
    rows_ = [[draw(st.sampled_from([n, n.upper(), f" {n} ", f"m{MOMENT_NAMES.index(n) + 1}"])),
              draw(good), draw(positive), draw(source_text)] for n in order]
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["name", "value", "se", "drop", "repeat"]))
        i = draw(st.integers(0, len(rows_) - 1)) if rows_ else None
        if i is None:
            break
        if kind == "name":
            rows_[i][0] = draw(names)
        elif kind in ("value", "se"):
            rows_[i][1 if kind == "value" else 2] = draw(number_text)
        elif kind == "drop":
            rows_.pop(i)
        else:
            rows_.append(list(rows_[i]))
    return [tuple(r) for r in rows_]


rows = st.one_of(mutated_rows(), junk_rows)


def _expected(rows_: list) -> dict | None:
    """What a correct parser must return for these rows (moment -> (value, se, source)), or None to refuse."""
    found = {}
    for name, value, se, source in rows_:
        key = ALIASES.get(name.strip().lower(), name.strip().lower())
        if key not in MOMENT_NAMES or key in found:
            return None
        try:
            v, s = float(value.strip()), float(se.strip())
        except ValueError:
            return None
        if not (math.isfinite(v) and math.isfinite(s) and s > 0):
            return None
        found[key] = (v, s, source.strip())
    # Any non-empty subset of the moments is valid (issue 22 item 7): the others are not targeted.
    return found or None


def _assert_targets(got, expected: dict) -> None:
    absent = (math.nan, math.nan, "")
    np.testing.assert_array_equal(got.values, [expected.get(n, absent)[0] for n in MOMENT_NAMES])
    np.testing.assert_array_equal(got.se, [expected.get(n, absent)[1] for n in MOMENT_NAMES])
    assert got.sources == tuple(expected.get(n, absent)[2] for n in MOMENT_NAMES)
    assert got.used == tuple(n for n in MOMENT_NAMES if n in expected)


def test_targets_csv_is_parsed_exactly_or_refused():
    counts = collections.Counter()

    @fuzz(700)
    @given(rows=rows, header=st.sampled_from(["moment,value,se,source", "Moment, Value ,SE,source",
                                              "value,moment,se,source"]))
    def check(rows, header):
        cols = [c.strip().lower() for c in header.split(",")]
        lines = [header]
        for name, value, se, src in rows:
            cells = {"moment": name, "value": value, "se": se, "source": src}
            lines.append(",".join(f'"{cells[c]}"' for c in cols))
        text = "\n".join(lines) + "\n"
        expected = _expected(rows)
        try:
            got = parse_csv(text, "fuzz.csv")
        except TargetsError as exc:
            event("refused")
            counts["refused"] += 1
            assert "fuzz.csv" in str(exc)
            assert expected is None, f"refused valid targets: {exc}"
            return
        event("accepted")
        counts["accepted"] += 1
        assert expected is not None, "accepted invalid targets"
        _assert_targets(got, expected)

    check()
    assert_shares(counts, valid=0.2, refused=0.3)


def test_targets_toml_is_parsed_exactly_or_refused():
    """The same rows as TOML ``[[target]]`` tables (numbers as TOML floats, text as strings)."""
    counts = collections.Counter()

    def literal(text):
        """The TOML literal of a cell: a float (TOML has nan and inf) or, if not one, a string."""
        try:
            value = float(text)
        except ValueError:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")

    @fuzz(300)
    @given(rows=rows)
    def check(rows):
        text = "".join(f'[[target]]\nmoment = "{n}"\nvalue = {literal(v)}\nse = {literal(s)}\nsource = "{src}"\n\n'
                       for n, v, s, src in rows)
        expected = _expected(rows)
        try:
            got = parse_toml(text, "fuzz.toml")
        except TargetsError:
            counts["refused"] += 1
            assert expected is None
            return
        counts["accepted"] += 1
        assert expected is not None
        _assert_targets(got, expected)

    check()
    assert_shares(counts, valid=0.2, refused=0.3)


@fuzz(300)
@given(text=st.text(max_size=300), toml=st.booleans())
def test_arbitrary_text_never_crashes_the_target_parsers(text, toml):
    try:
        (parse_toml if toml else parse_csv)(text, "fuzz")
    except TargetsError:
        pass


@fuzz(200)
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".toml"]))
def test_arbitrary_bytes_in_a_targets_file(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"targets{suffix}"
    path.write_bytes(data)
    try:
        targets = load_targets(path)
    except TargetsError:
        return
    used = targets.mask
    assert used.any() and np.isfinite(targets.values[used]).all() and (targets.se[used] > 0).all()
    assert np.isnan(targets.values[~used]).all() and np.isnan(targets.se[~used]).all()


# ---------------------------------------------------------------------------------------------
# Values inside a parameter's domain, and how a number is written on a command line

def inside(name: str, cap: float = 1e6) -> st.SearchStrategy[float]:
    """Finite floats inside DOMAINS[name] (|x| <= cap where the domain is unbounded)."""
    d = DOMAINS[name]
    lo = -cap if d.lo is None else d.lo
    hi = cap if d.hi is None else d.hi
    values = st.floats(lo, hi, exclude_min=d.lo_open and d.lo is not None, exclude_max=d.hi_open and d.hi is not None,
                       allow_nan=False, allow_infinity=False)
    if d.exclude is not None:
        values = values.filter(lambda x: x != d.exclude)
    return values


#: Ways of writing a float that give back exactly that float.
EXACT_FORMATS = (repr, lambda x: f"{x:.17g}", lambda x: f"{x:.16e}", lambda x: f" {x!r} ",
                 lambda x: f"+{x!r}" if not x < 0 and math.copysign(1, x) > 0 else repr(x))
NOT_NUMBERS = ("high", "1,5", "0x10", "1..2", "--1", "TRUE", "1 2", "\u00bd", "e5", "0.5.", "five")
NOT_FINITE = ("nan", "-nan", "NaN", "inf", "-Infinity", "1e400", "-1e999")
UNKNOWN_NAMES = ("beta", "Sigma", "XI", "sigma_", "lambda", "m1", "gini", "xi2")
assert not set(UNKNOWN_NAMES) & set(PARAM_NAMES)


# ---------------------------------------------------------------------------------------------
# --set NAME=VALUE

@st.composite
def set_cases(draw):
    """(items, expected) with expected the dict the parser must return, or None when it must refuse.

    About three quarters are valid: 1-4 distinct known names, each with a value inside its domain
    written exactly; the rest corrupt one item (or repeat a name) in a known way.
    """
    chosen = draw(st.lists(st.sampled_from(PARAM_NAMES), min_size=1, max_size=4, unique=True))
    expected, items = {}, []
    for name in chosen:
        value = draw(inside(name))
        fmt = draw(st.sampled_from(EXACT_FORMATS))
        pad = draw(st.sampled_from(["", " "]))
        items.append(f"{pad}{name}{pad}={fmt(value)}")
        expected[name] = value
    if draw(st.integers(0, 3)) > 0:
        return items, expected
    i = draw(st.integers(0, len(items) - 1))
    name = chosen[i]
    kind = draw(st.sampled_from(["no-equals", "empty-name", "unknown-name", "empty-value", "not-a-number",
                                 "not-finite", "repeated"]))
    text = repr(expected[name])
    items[i] = {
        "no-equals": f"{name} {text}",
        "empty-name": f" ={text}",
        "unknown-name": f"{draw(st.sampled_from(UNKNOWN_NAMES))}={text}",
        "empty-value": f"{name}={draw(st.sampled_from(['', ' ']))}",
        "not-a-number": f"{name}={draw(st.sampled_from(NOT_NUMBERS))}",
        "not-finite": f"{name}={draw(st.sampled_from(NOT_FINITE))}",
        "repeated": items[i],
    }[kind]
    if kind == "repeated":
        items.insert(draw(st.integers(0, len(items))), f"{name}={BASELINE[name]!r}")
    return items, None


def test_set_assignments_round_trip_or_refuse():
    counts = collections.Counter()

    @fuzz(150)
    @given(case=set_cases())
    def check(case):
        items, expected = case
        try:
            got = parse_assignments(items)
        except ConfigError as exc:
            event("refused")
            counts["refused"] += 1
            assert expected is None, f"refused valid --set {items}: {exc}"
            return
        event("accepted")
        counts["accepted"] += 1
        assert expected is not None, f"accepted invalid --set {items}: {got}"
        # Exactly the names and the numbers written, as Python floats.
        assert got == expected and list(got) == list(expected)
        assert all(type(v) is float for v in got.values())
        # Values inside the domains are accepted by the model, exactly (or refused only for the
        # one constraint between two parameters, z_lo < z_hi).
        z_lo, z_hi = got.get("z_lo", BASELINE["z_lo"]), got.get("z_hi", BASELINE["z_hi"])
        if z_lo < z_hi:
            params = model_baseline().replace(**got)
            assert all(getattr(params, n) == v for n, v in got.items())
        else:
            with pytest.raises(InvalidParameterError, match="z_lo"):
                model_baseline().replace(**got)

    check()
    assert_shares(counts, valid=0.6, refused=0.1)


@fuzz(50)
@given(items=st.lists(st.text(string.printable, max_size=16), max_size=3))
def test_arbitrary_set_text_parses_or_refuses(items):
    try:
        out = parse_assignments(items)
    except EstimationError:
        return
    assert len(out) == len(items)
    for item, (name, value) in zip(items, out.items()):
        assert item.partition("=")[0].strip() == name in PARAM_NAMES
        assert value == float(item.partition("=")[2]) and math.isfinite(value)


# ---------------------------------------------------------------------------------------------
# --bound NAME=LOW:HIGH

@st.composite
def bound_cases(draw):
    """(text, expected) with expected the (name, low, high) to return, or None when it must refuse."""
    name = draw(st.sampled_from(PARAM_NAMES))
    lo = draw(st.floats(-1e6, 1e6))
    hi = lo + draw(st.floats(1e-3, 1e6))
    fmt_lo, fmt_hi = draw(st.sampled_from(EXACT_FORMATS)), draw(st.sampled_from(EXACT_FORMATS))
    lo_text, hi_text = fmt_lo(lo), fmt_hi(hi)
    ends = draw(st.sampled_from(["both", "both", "both", "no-low", "no-high", "infinite"]))
    if ends == "no-low":
        lo, lo_text = -math.inf, draw(st.sampled_from(["", " "]))
    elif ends == "no-high":
        hi, hi_text = math.inf, draw(st.sampled_from(["", " "]))
    elif ends == "infinite":
        lo, lo_text, hi, hi_text = -math.inf, "-inf", math.inf, "inf"
    pad = draw(st.sampled_from(["", " "]))
    text = f"{pad}{name}{pad}={lo_text}:{hi_text}"
    if draw(st.integers(0, 5)) > 0:
        return text, (name, lo, hi)
    kind = draw(st.sampled_from(["reversed", "equal", "unknown-name", "not-a-number", "nan", "no-colon",
                                 "no-equals", "empty-name"]))
    number = draw(st.sampled_from(NOT_NUMBERS))
    a, b = repr(draw(st.floats(-10, 10))), repr(draw(st.floats(11, 20)))
    text = {
        "reversed": f"{name}={b}:{a}",
        "equal": f"{name}={a}:{a}",
        "unknown-name": f"{draw(st.sampled_from(UNKNOWN_NAMES))}={a}:{b}",
        "not-a-number": draw(st.sampled_from([f"{name}={number}:{b}", f"{name}={a}:{number}"])),
        "nan": draw(st.sampled_from([f"{name}=nan:{b}", f"{name}={a}:nan"])),
        "no-colon": f"{name}={a}",
        "no-equals": f"{name}:{a}:{b}",
        "empty-name": f"={a}:{b}",
    }[kind]
    return text, None


def test_bounds_round_trip_or_refuse():
    counts = collections.Counter()

    @fuzz(160)
    @given(case=bound_cases())
    def check(case):
        text, expected = case
        try:
            got = parse_bound(text)
        except ConfigError as exc:
            event("refused")
            counts["refused"] += 1
            assert expected is None, f"refused valid --bound {text!r}: {exc}"
            return
        event("accepted")
        counts["accepted"] += 1
        assert expected is not None, f"accepted invalid --bound {text!r}: {got}"
        assert got == expected and all(type(x) is float for x in got[1:])

    check()
    assert_shares(counts, valid=0.6, refused=0.1)


@fuzz(40)
@given(text=st.one_of(st.text(string.printable, max_size=20),
                      st.builds(lambda n, a, b: f"{n}={a}:{b}", st.sampled_from(PARAM_NAMES + ("beta",)),
                                number_text, number_text)))
def test_arbitrary_bound_text_parses_or_refuses(text):
    try:
        name, lo, hi = parse_bound(text)
    except EstimationError:
        return
    assert name in PARAM_NAMES and lo < hi and not math.isnan(lo) and not math.isnan(hi)


# ---------------------------------------------------------------------------------------------
# Calibration configurations (report.json's "config", what --replay reads)

anything = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.one_of(st.text(max_size=6), st.floats(), st.integers()), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.floats(), st.integers(), st.text(max_size=4)), max_size=2),
)
config_values = {
    "targets": st.one_of(st.none(), st.text(max_size=10)),
    "free": st.one_of(st.lists(st.sampled_from(PARAM_NAMES + ("beta", "")), max_size=4), anything),
    "bounds": st.one_of(st.dictionaries(st.sampled_from(PARAM_NAMES[:6]), st.lists(st.floats(), max_size=3), max_size=2),
                        anything),
    "weights": st.one_of(st.sampled_from(["diagonal", "identity", "optimal", "optimum"]), anything),
    "fixed": st.one_of(st.dictionaries(st.sampled_from(PARAM_NAMES + ("beta",)), st.floats(), max_size=2), anything),
    "n_agents": st.one_of(st.sampled_from([2000, 2001, 0, -5]), anything),
    "n_firms": st.one_of(st.sampled_from([20, 7, 0]), anything),
    "n_occupations": st.one_of(st.sampled_from([10, 3]), anything),
    "n_tasks": st.one_of(st.sampled_from([40, 0]), anything),
    "spec": st.one_of(st.sampled_from(["additive", "ces", "cobb"]), anything),
    "precision": st.one_of(st.sampled_from(["float64", "float32", "float16"]), anything),
    "fp_damping": st.one_of(st.floats(-1, 2), anything),
    "seed": st.one_of(st.integers(-5, 2**33), anything),
    "n_starts": anything, "max_iter": anything, "gtol": anything, "ftol": anything, "n_sim": anything,
    "flip_checks": anything,
}


@st.composite
def junk_configs(draw):
    keys = draw(st.lists(st.sampled_from(list(config_values) + ["colour"]), unique=True, max_size=5))
    return {k: draw(config_values.get(k, anything)) for k in keys}


def _finite_bounds(draw, name: str) -> tuple[float, float]:
    """A bound (low, high) inside the domain of ``name`` that a calibration accepts (an end may be
    infinite where the domain is open there: to_dict writes it as "inf" or "-inf")."""
    d = DOMAINS[name]
    a = -100.0 if d.lo is None else d.lo
    b = 100.0 if d.hi is None else d.hi
    lo = draw(st.floats(a, b - (b - a) / 100))
    hi = draw(st.floats(lo + (b - lo) / 100, b))
    if d.lo is None and draw(st.booleans()):
        lo = -math.inf
    if d.hi is None and draw(st.booleans()):
        hi = math.inf
    if d.exclude is not None and lo < d.exclude < hi:
        hi = d.exclude
    return lo, hi


def _fixed_value(draw, name: str) -> float:
    # z_lo < z_hi must hold with the other at its baseline (0.4, 0.85) and with each other.
    if name == "z_lo":
        return draw(st.floats(0.0, 0.39))
    if name == "z_hi":
        return draw(st.floats(0.86, 1.0))
    return draw(inside(name))


def valid_configs(files: dict) -> st.SearchStrategy[CalibrationConfig]:
    """Calibration configurations that ``calibration.validate`` accepts, from known values."""

    @st.composite
    def build(draw):
        free = draw(st.lists(st.sampled_from(PARAM_NAMES), min_size=1, max_size=4, unique=True)
                    .filter(lambda f: not {"z_lo", "z_hi"} <= set(f)))
        # rho needs a bound on one side of 0: its default, the real line, contains the excluded 0.
        bounds = {n: _finite_bounds(draw, n) for n in free if n == "rho" or draw(st.booleans())}
        others = [n for n in PARAM_NAMES if n not in free]
        fixed = {n: _fixed_value(draw, n) for n in draw(st.lists(st.sampled_from(others), max_size=3, unique=True))}
        n_firms, n_occupations = draw(st.sampled_from([10, 20, 50, 100])), draw(st.sampled_from([5, 10, 20]))
        return CalibrationConfig(
            targets=draw(st.sampled_from([None, files["csv"], files["toml"]])),
            free=tuple(free), bounds=bounds, fixed=fixed,
            weights=draw(st.sampled_from(["diagonal", "identity", "optimal", files["weights"]])),
            n_agents=math.lcm(n_firms, n_occupations) * draw(st.integers(1, 50)), n_firms=n_firms,
            n_occupations=n_occupations, n_tasks=draw(st.integers(1, 200)), spec=draw(st.sampled_from(SPECS)),
            precision=draw(st.sampled_from(PRECISIONS)), fp_damping=draw(st.floats(0.0, 1.0, exclude_min=True)),
            fp_solver=draw(st.sampled_from(["anderson", "damped"])), seed=draw(st.integers(0, 2**32 - 1)),
            n_starts=draw(st.integers(1, 10)), max_iter=draw(st.integers(1, 500)),
            gtol=draw(st.floats(1e-12, 1.0)), ftol=draw(st.floats(1e-12, 1.0)), n_sim=draw(st.integers(2, 50)),
            flip_checks=draw(st.integers(0, 6)),
        )

    return build()


def _mutations(c: CalibrationConfig, files: dict) -> dict:
    """One known corruption of the JSON form of a valid configuration per name; every one must be refused."""
    first = c.free[0]
    not_free = next(n for n in ("sigma", "tau", "xi", "alpha", "psi") if n not in c.free)  # free has <= 4
    outside = {"sigma": -1.0, "tau": 0.0, "xi": 2.0, "alpha": -0.5, "psi": -1.0}[not_free]
    return {
        "unknown key": lambda d: d | {"colour": "blue"},
        "not an object": lambda d: list(d.items()),
        "n_agents as text": lambda d: d | {"n_agents": str(c.n_agents)},
        "n_agents not a multiple": lambda d: d | {"n_agents": c.n_agents + 1},
        "n_tasks a boolean": lambda d: d | {"n_tasks": True},
        "seed not whole": lambda d: d | {"seed": 1.5},
        "free a string": lambda d: d | {"free": first},
        "free unknown": lambda d: d | {"free": [*c.free, "beta"]},
        "free repeated": lambda d: d | {"free": [*c.free, first]},
        "free empty": lambda d: d | {"free": []},
        "free z_lo and z_hi": lambda d: d | {"free": ["z_lo", "z_hi"], "bounds": {}},
        "bound of one number": lambda d: d | {"bounds": {first: [1.0]}},
        "bound text": lambda d: d | {"bounds": {first: ["low", 1.0]}},
        "bound empty": lambda d: d | {"bounds": {first: [1.0, 1.0]}},
        "bound not free": lambda d: d | {"bounds": {not_free: [0.1, 0.2]}},
        "fixed and free": lambda d: d | {"fixed": {**d["fixed"], first: BASELINE[first]}},
        "fixed unknown": lambda d: d | {"fixed": {**d["fixed"], "beta": 1.0}},
        "fixed outside domain": lambda d: d | {"fixed": {**d["fixed"], not_free: outside}},
        "fixed text": lambda d: d | {"fixed": {not_free: "high"}},
        "weights unknown": lambda d: d | {"weights": "optimum"},
        "weights a number": lambda d: d | {"weights": 1},
        "spec unknown": lambda d: d | {"spec": "cobb"},
        "precision unknown": lambda d: d | {"precision": "float16"},
        "fp_solver unknown": lambda d: d | {"fp_solver": "broyden"},
        "damping zero": lambda d: d | {"fp_damping": 0},
        "damping above one": lambda d: d | {"fp_damping": 1.5},
        "n_sim one": lambda d: d | {"n_sim": 1},
        "n_starts zero": lambda d: d | {"n_starts": 0},
        "max_iter zero": lambda d: d | {"max_iter": 0},
        "flip_checks negative": lambda d: d | {"flip_checks": -1},
        "gtol zero": lambda d: d | {"gtol": 0.0},
        "ftol infinite": lambda d: d | {"ftol": "inf"},
        "targets missing": lambda d: d | {"targets": files["missing"]},
        "targets a number": lambda d: d | {"targets": 3},
    }


@pytest.fixture(scope="module")
def config_files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("configs")
    default = load_targets(None)
    rows = [(n, float(v), float(e)) for n, v, e in zip(MOMENT_NAMES, default.values, default.se)]
    (folder / "targets.csv").write_text("moment,value,se\n" + "".join(f"{n},{v!r},{s!r}\n" for n, v, s in rows))
    (folder / "targets.toml").write_text("".join(f'[[target]]\nmoment = "{n}"\nvalue = {v!r}\nse = {s!r}\n\n'
                                                 for n, v, s in rows))
    pd.DataFrame(np.eye(6), index=MOMENT_NAMES, columns=MOMENT_NAMES).to_csv(folder / "weights.csv")
    return {"csv": str(folder / "targets.csv"), "toml": str(folder / "targets.toml"),
            "weights": str(folder / "weights.csv"), "missing": str(folder / "nowhere.csv")}


#: The keys of a configuration, grouped by what must agree: the free parameters with their bounds and
#: the fixed ones; N with F and O. A report.json may omit any group (defaults) and stay valid.
KEY_GROUPS = [("free", "bounds", "fixed"), ("n_agents", "n_firms", "n_occupations")]
KEY_GROUPS += [(f.name,) for f in dataclasses.fields(CalibrationConfig) if not any(f.name in g for g in KEY_GROUPS)]


def test_calibration_configurations_round_trip_or_refuse(config_files):
    """What ``--replay`` reads from a report.json: a valid configuration comes back equal, field by
    field, and passes validation; a corrupted one is refused with the project's own error; any other
    dict gives a well-formed configuration or that error."""
    counts = collections.Counter()
    default = CalibrationConfig()
    configs = valid_configs(config_files)

    @fuzz(600)
    @given(data=st.data(), die=st.integers(0, 9))
    def check(data, die):
        mode = "valid" if die < 7 else "mutated" if die < 9 else "junk"  # about 70%, 20% and 10%
        if mode == "junk":
            counts["junk"] += 1
            _check_junk(data.draw(junk_configs()))
            return
        c = data.draw(configs)
        written = json.loads(json.dumps(c.to_dict()))  # through JSON, as report.json holds it
        if mode == "mutated":
            mutations = _mutations(c, config_files)
            kind = data.draw(st.sampled_from(sorted(mutations)))
            corrupted = mutations[kind](copy.deepcopy(written))
            try:
                calibration.validate(CalibrationConfig.from_dict(corrupted))
            except (EstimationError, ModelError) as exc:
                event(f"refused: {type(exc).__name__}")
                counts["refused"] += 1
                return
            raise AssertionError(f"accepted a configuration with {kind}: {corrupted}")
        # Keys left out take their defaults (keys that are only valid together are kept or left out together).
        kept = [k for group in KEY_GROUPS if data.draw(st.integers(0, 4)) > 0 for k in group]
        expected = dataclasses.replace(default, **{k: getattr(c, k) for k in kept})
        # to_dict leaves out a key at its default that older reports lack (moments=None): absent here too.
        got = CalibrationConfig.from_dict({k: written[k] for k in kept if k in written})
        assert got == expected
        for field in dataclasses.fields(CalibrationConfig):
            value, want = getattr(got, field.name), getattr(expected, field.name)
            assert value == want, field.name
            assert type(value) is type(want) or isinstance(want, dict), field.name
        assert got.to_dict() == expected.to_dict()
        targets, free, settings_, base, weights = calibration.validate(got)
        event("accepted")
        counts["accepted"] += 1
        assert free.names == expected.free
        for n, lo, hi in zip(free.names, free.lower, free.upper):
            assert (lo, hi) == expected.bounds.get(n, SEARCH_BOX[n])  # --bound, else the default search box
        assert (settings_.n_agents, settings_.n_firms, settings_.n_occupations, settings_.n_tasks, settings_.spec,
                settings_.precision, settings_.fp_damping, settings_.fp_solver) == (
            expected.n_agents, expected.n_firms, expected.n_occupations, expected.n_tasks, expected.spec,
            expected.precision, expected.fp_damping, expected.fp_solver)
        assert all(getattr(base, n) == v for n, v in expected.fixed.items())
        assert targets.origin == ("default" if expected.targets is None else expected.targets)

    check()
    assert_shares(counts, valid=0.6, refused=0.1)


MUTATIONS = sorted(_mutations(CalibrationConfig(), {}))


@pytest.mark.parametrize("kind", MUTATIONS)
def test_every_corruption_of_a_configuration_is_refused(kind, config_files):
    """Each known corruption, on a hand-made valid configuration (the fuzz above draws only some)."""
    c = CalibrationConfig(targets=config_files["toml"], free=("alpha", "xi", "rho"),
                          bounds={"xi": (0.05, 0.5), "rho": (-3.0, -0.1)}, fixed={"eta1": 1.0, "z_lo": 0.3},
                          weights=config_files["weights"], n_agents=4000, n_firms=40, n_occupations=20,
                          spec="ces", precision="float32", fp_damping=0.8, fp_solver="damped", seed=7,
                          n_starts=2, max_iter=50, gtol=1e-6, ftol=1e-8, n_sim=5, flip_checks=1)
    written = json.loads(json.dumps(c.to_dict()))
    calibration.validate(CalibrationConfig.from_dict(written))  # the control: valid as written
    corrupted = _mutations(c, config_files)[kind](copy.deepcopy(written))
    with pytest.raises((EstimationError, ModelError)):
        calibration.validate(CalibrationConfig.from_dict(corrupted))


def _check_junk(values: dict) -> None:
    """Any dict: a configuration whose every part the estimation will use is well formed, or an error."""
    try:
        config = CalibrationConfig.from_dict(values)
        targets, free, settings_, base, weights = calibration.validate(config)
    except (EstimationError, ModelError) as exc:
        event(f"junk refused: {type(exc).__name__}")
        return
    event("junk accepted")
    assert settings_.n_agents % settings_.n_firms == 0 and 0 < settings_.fp_damping <= 1
    assert all(n in PARAM_NAMES for n in free.names) and len(set(free.names)) == len(free.names)
    assert np.all(np.asarray(free.lower) < np.asarray(free.upper))
    assert np.isfinite(weights).all() and np.linalg.eigvalsh(weights).min() > 0
    assert isinstance(config.n_starts, int) and config.n_starts >= 1 and config.n_sim >= 2


@pytest.mark.parametrize("config", [
    # An open lower bound, as --bound lam=:1 gives (parse_bound and free_parameters accept it).
    CalibrationConfig(free=("lam",), bounds={"lam": parse_bound("lam=:1")[1:]}),
    CalibrationConfig(weights="/data/Infinity/weights.csv"),
], ids=["minus-inf-bound", "Infinity-in-a-path"])
def test_infinity_in_a_configuration_round_trips(config):
    """Once broken: to_dict replaced the text 'Infinity' anywhere in its JSON by '"inf"', so that
    -inf became -"inf" and a path containing Infinity lost its quotes (invalid JSON either way)."""
    written = config.to_dict()
    assert CalibrationConfig.from_dict(json.loads(json.dumps(written, allow_nan=False))) == config
