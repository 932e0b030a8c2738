"""Fuzzing the parsers of user input: targets files, calibration configurations, --set and --bound.

Property of every parser: for any input it either returns a valid object or raises the project's
own error (``EstimationError`` or the model's ``ModelError``), never another exception and never a
silently wrong value. Where it succeeds on structured input, the result is checked against what
was written. 2,500 generated cases in all (see ``max_examples``), derandomised so that CI sees the
same cases every run.
"""

from __future__ import annotations

import math
import string

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from estimation import calibration
from estimation.calibration import CalibrationConfig
from estimation.cli import parse_assignments
from estimation.errors import EstimationError, TargetsError
from estimation.parameters import parse_bound
from estimation.targets import ALIASES, load_targets, parse_csv, parse_toml
from jaxmodel import MOMENT_NAMES, PARAM_NAMES, ModelError

def fuzz(n: int) -> settings:
    """n derandomised cases without deadline or example database (the same cases on every run)."""
    return settings(max_examples=n, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])

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
    """What a correct parser must return for these rows (moment -> (value, se)), or None to refuse."""
    found = {}
    for name, value, se, _ in rows_:
        key = ALIASES.get(name.strip().lower(), name.strip().lower())
        if key not in MOMENT_NAMES or key in found:
            return None
        try:
            v, s = float(value.strip()), float(se.strip())
        except ValueError:
            return None
        if not (math.isfinite(v) and math.isfinite(s) and s > 0):
            return None
        found[key] = (v, s)
    return found if set(found) == set(MOMENT_NAMES) else None


@fuzz(700)
@given(rows=rows, header=st.sampled_from(["moment,value,se,source", "Moment, Value ,SE,source", "value,moment,se,source"]))
def test_targets_csv_is_parsed_exactly_or_refused(rows, header):
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
        assert "fuzz.csv" in str(exc)
        assert expected is None, f"refused valid targets: {exc}"
        return
    event("accepted")
    assert expected is not None, "accepted invalid targets"
    np.testing.assert_array_equal(got.values, [expected[n][0] for n in MOMENT_NAMES])
    np.testing.assert_array_equal(got.se, [expected[n][1] for n in MOMENT_NAMES])


@fuzz(300)
@given(rows=rows)
def test_targets_toml_is_parsed_exactly_or_refused(rows):
    """The same rows as TOML ``[[target]]`` tables (numbers as TOML floats, text as strings)."""
    def literal(text):
        """The TOML literal of a cell: a float (TOML has nan and inf) or, if not one, a string."""
        try:
            value = float(text)
        except ValueError:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")

    text = "".join(f'[[target]]\nmoment = "{n}"\nvalue = {literal(v)}\nse = {literal(s)}\nsource = "{src}"\n\n'
                   for n, v, s, src in rows)
    expected = _expected(rows)
    try:
        got = parse_toml(text, "fuzz.toml")
    except TargetsError:
        assert expected is None
        return
    assert expected is not None
    np.testing.assert_array_equal(got.values, [expected[n][0] for n in MOMENT_NAMES])


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
    assert np.isfinite(targets.values).all() and (targets.se > 0).all()


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
def configs(draw):
    keys = draw(st.lists(st.sampled_from(list(config_values) + ["colour"]), unique=True, max_size=5))
    return {k: draw(config_values.get(k, anything)) for k in keys}


@fuzz(600)
@given(values=configs())
def test_calibration_configurations_are_validated_or_refused(values):
    """What ``--replay`` reads from a report.json: any dict gives a config or a clear error."""
    try:
        config = CalibrationConfig.from_dict(values)
        targets, free, settings_, base, weights = calibration._validate(config)
    except (EstimationError, ModelError) as exc:
        event(f"refused: {type(exc).__name__}")
        return
    event("accepted")
    # Accepted: everything the estimation will use is well formed.
    assert settings_.n_agents % settings_.n_firms == 0 and 0 < settings_.fp_damping <= 1
    assert all(n in PARAM_NAMES for n in free.names) and len(set(free.names)) == len(free.names)
    assert np.all(np.asarray(free.lower) < np.asarray(free.upper))
    assert np.isfinite(weights).all() and np.linalg.eigvalsh(weights).min() > 0
    assert isinstance(config.n_starts, int) and config.n_starts >= 1 and config.n_sim >= 2


@fuzz(200)
@given(items=st.lists(st.text(string.printable, max_size=16), max_size=3))
def test_set_assignments_parse_or_refuse(items):
    try:
        out = parse_assignments(items)
    except EstimationError:
        return
    assert all(k in PARAM_NAMES and math.isfinite(v) for k, v in out.items())


@fuzz(200)
@given(text=st.one_of(st.text(string.printable, max_size=20),
                      st.builds(lambda n, a, b: f"{n}={a}:{b}", st.sampled_from(PARAM_NAMES + ("beta",)),
                                number_text, number_text)))
def test_bounds_parse_or_refuse(text):
    try:
        name, lo, hi = parse_bound(text)
    except EstimationError:
        return
    assert name in PARAM_NAMES and lo < hi and not math.isnan(lo) and not math.isnan(hi)
