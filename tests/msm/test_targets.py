"""Targets files: the shipped scenario, CSV and TOML, and a clear error for every malformed file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from estimation.errors import TargetsError
from estimation.msm.targets import load_targets
from jaxmodel import MOMENT_NAMES
from tests.helpers import TARGETS_CSV

GOOD = TARGETS_CSV


def test_default_targets_are_the_model_md_scenario():
    t = load_targets()
    np.testing.assert_array_equal(t.values, [-0.22, 0.25, -0.02, 0.022, 0.01, 0.001])
    np.testing.assert_array_equal(t.se, [0.07, 0.05, 0.02, 0.010, 0.01, 0.004])
    assert "Dell'Acqua" in t.sources[0] and "CPS ASEC" in t.sources[5]
    assert t.names == MOMENT_NAMES


def test_csv_toml_and_aliases_agree(tmp_path: Path):
    csv = tmp_path / "t.csv"
    csv.write_text(GOOD)
    rows = [line.split(",") for line in GOOD.strip().splitlines()[1:]]
    toml = tmp_path / "t.toml"
    toml.write_text("".join(
        f'[[target]]\nmoment = "m{i + 1}"\nvalue = {v}\nse = {s}\nsource = "{src}"\n\n' for i, (_, v, s, src) in enumerate(rows)
    ))
    shuffled = tmp_path / "shuffled.csv"
    lines = GOOD.strip().splitlines()
    shuffled.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    a, b, c = load_targets(csv), load_targets(toml), load_targets(shuffled)
    for other in (b, c):
        np.testing.assert_array_equal(a.values, other.values)
        np.testing.assert_array_equal(a.se, other.se)


def _replace(row: str, new: str) -> str:
    return GOOD.replace(row, new)


BAD_CSV = [
    ("", "empty file"),
    ("moment,value\ncv_change,1\n", "missing column(s) se"),
    ("moment,value,se,comment\n", "unknown column(s) comment"),
    ("moment,value,se\n", "no targets found"),
    (_replace("gini_change,0.001,0.004,f", "gini,0.001,0.004,f"), "unknown moment 'gini'"),
    (GOOD + "cv_change,-0.2,0.07,dup\n", "appears twice"),
    (_replace("0.25,0.05", "abc,0.05"), "value='abc' is not a number"),
    (_replace("0.25,0.05", "0.25,zero"), "se='zero' is not a number"),
    (_replace("0.25,0.05", "nan,0.05"), "must be finite"),
    (_replace("0.25,0.05", "0.25,inf"), "must be finite"),
    (_replace("0.25,0.05", "0.25,0"), "must be > 0"),
    (_replace("0.25,0.05", "0.25,-0.05"), "must be > 0"),
    (_replace("0.25,0.05", "0.25,"), "se is empty"),
    (_replace("0.25,0.05,b", "0.25,0.05,b,extra"), "more fields"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_CSV, ids=[f for _, f in BAD_CSV])
def test_malformed_csv_is_refused_with_a_clear_error(tmp_path: Path, text, fragment):
    path = tmp_path / "targets.csv"
    path.write_text(text)
    with pytest.raises(TargetsError) as info:
        load_targets(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_a_file_with_fewer_rows_targets_only_its_moments(tmp_path: Path):
    """Issue 22 item 7: a file may leave moments out; they are not targeted (value and SE NaN,
    Omega 0 there), the others read exactly as from the full file."""
    path = tmp_path / "four.csv"
    lines = GOOD.strip().splitlines()
    path.write_text("\n".join([lines[0], *lines[1:5]]) + "\n")
    (tmp_path / "six.csv").write_text(GOOD)
    full, four = load_targets(tmp_path / "six.csv"), load_targets(path)
    assert four.used == four.given == MOMENT_NAMES[:4] and four.targeted == (True,) * 4 + (False,) * 2
    np.testing.assert_array_equal(four.values[:4], full.values[:4])
    assert np.isnan(four.values[4:]).all() and np.isnan(four.se[4:]).all() and four.sources[4:] == ("", "")
    np.testing.assert_array_equal(four.fit_values, np.r_[four.values[:4], 0.0, 0.0])
    np.testing.assert_array_equal(np.diag(four.covariance), np.r_[four.se[:4] ** 2, 0.0, 0.0])
    assert [r["targeted"] for r in four.to_records()] == [True] * 4 + [False] * 2
    # restricted(): a subset of the given moments; the full file is untouched.
    three = full.restricted(MOMENT_NAMES[1:4])
    assert three.used == MOMENT_NAMES[1:4] and full.used == MOMENT_NAMES
    np.testing.assert_array_equal(three.values, full.values)
    np.testing.assert_array_equal(three.fit_values, np.r_[0.0, full.values[1:4], 0.0, 0.0])


def test_unreadable_files_are_refused(tmp_path: Path):
    with pytest.raises(TargetsError, match="does not exist"):
        load_targets(tmp_path / "missing.csv")
    (tmp_path / "t.xlsx").write_bytes(b"PK")
    with pytest.raises(TargetsError, match="unknown format .xlsx"):
        load_targets(tmp_path / "t.xlsx")
    (tmp_path / "latin.csv").write_bytes(GOOD.replace("a\n", "caf\xe9\n").encode("latin-1"))
    with pytest.raises(TargetsError, match="not UTF-8"):
        load_targets(tmp_path / "latin.csv")
    (tmp_path / "bad.toml").write_text("[[target]\nmoment=")
    with pytest.raises(TargetsError, match="not valid TOML"):
        load_targets(tmp_path / "bad.toml")
    (tmp_path / "flat.toml").write_text('moment = "m1"\n')
    with pytest.raises(TargetsError, match=r"\[\[target\]\]"):
        load_targets(tmp_path / "flat.toml")
