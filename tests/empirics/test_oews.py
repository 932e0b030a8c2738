"""The OEWS loader on every real year, fuzzed corruptions, harmonisation, exposure and regressions."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estimation.empirics import exposure, occupations, oews
from estimation.errors import DataError

# From MANIFEST.txt and the BLS releases: rows, detailed occupations, national employment.
EXPECTED = {
    2019: (1329, 789, 146_875_480), 2020: (1329, 789, 139_099_570), 2021: (1403, 831, 140_886_310),
    2022: (1402, 830, 147_886_000), 2023: (1403, 831, 151_853_870), 2024: (1403, 831, 154_187_380),
}


@pytest.fixture(scope="module")
def years(shared_data):
    files = oews.find_oews_files(shared_data)
    assert sorted(files) == sorted(EXPECTED)
    return {y: oews.read_oews(p) for y, p in files.items()}


def test_every_real_year_loads_with_its_published_counts(years):
    for year, (rows, detailed, total) in EXPECTED.items():
        r = years[year].report
        assert (r["rows"], r["detailed_kept"], r["employment_total"]) == (rows, detailed, total)
        # The detailed rows sum to the national total to within a few thousand (BLS rounding, '**').
        assert abs(r["employment_detailed"] - total) < 5_000
        assert years[year].detailed["occ_code"].is_unique


def test_special_cells_are_flags_not_numbers(years):
    d19 = years[2019].detailed
    assert (d19["a_median_flag"] == "top-coded").sum() == 7 and d19.loc[d19["a_median_flag"] != "", "a_median"].isna().all()
    assert (d19["a_mean_flag"] == "wage not available").sum() == 4
    d20 = years[2020].detailed
    assert (d20["tot_emp_flag"] == "employment not available").sum() == 1
    chief = years[2023].detailed.set_index("occ_code").loc["11-1011"]
    assert chief["a_pct90_flag"] == "top-coded" and np.isnan(chief["a_pct90"]) and chief["a_mean"] == 258_900


def test_csv_copies_and_bls_zip_read_the_same(shared_data, years, tmp_path):
    for year in (2019, 2023):
        csv = oews.read_oews(next(Path(shared_data).rglob(f"national_M{year}_dl.csv")))
        pd.testing.assert_frame_equal(csv.detailed, years[year].detailed)
    archive = tmp_path / "oesm23nat.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(years[2023].source, "oesm23nat/national_M2023_dl.xlsx")
    pd.testing.assert_frame_equal(oews.read_oews(archive).detailed, years[2023].detailed)


def test_hybrid_codes_are_grouped_explicitly(years):
    panel, report = oews.harmonise(years[2019], years[2023])
    groups = {g["group"]: g for g in report["harmonised_groups"]}
    software = next(g for g in groups.values() if "15-1256" in g["codes_2019"])
    assert {"15-1252", "15-1253"} <= set(software["codes_2023"])
    # Every 2019 detailed code is in the panel or listed as unmatched, and employment adds up.
    in_panel = {c for codes in panel["codes_2019"] for c in codes.split()}
    assert in_panel | set(report["unmatched"]["first"]) == set(years[2019].detailed["occ_code"])
    assert panel["tot_emp_2019"].sum() == pytest.approx(years[2019].detailed.loc[
        years[2019].detailed["occ_code"].isin(in_panel), "tot_emp"].sum())
    assert report["employment_share_kept"]["2023"] > 0.99


def test_crosswalks_raise_exposure_coverage(shared_data, years):
    panel, _ = oews.harmonise(years[2019], years[2023])
    grouped = exposure.to_groups(exposure.load_measures(shared_data), panel, years[2023])
    cover = exposure.coverage(grouped, panel, [2019, 2023]).set_index(["measure", "year"])
    # MANIFEST: direct 6-digit matches cover 93% (Eloundou), 80% (Felten, Eisfeldt, Webb) and 99%
    # (Tomlinson) of 2023 employment; the crosswalks must not do worse.
    floors = {"eloundou_gpt4_beta": 0.93, "felten_aioe": 0.80, "felten_lm_aioe": 0.80,
              "tomlinson_ai_applicability": 0.98, "eisfeldt_genai": 0.81, "webb_ai_thirdparty": 0.80}
    for name, floor in floors.items():
        assert cover.loc[(name, 2023), "employment_share"] >= floor, name


def test_regression_equals_direct_weighted_least_squares(shared_data, years):
    panel, _ = oews.harmonise(years[2019], years[2023])
    grouped = exposure.to_groups(exposure.load_measures(shared_data, ["felten_aioe"]), panel, years[2023])
    changes = occupations.outcome_changes(panel, 2019, 2023)
    for fe in (False, True):
        row = occupations.regress(changes, grouped["felten_aioe"], "d_log_median_wage", fixed_effects=fe)
        data = changes.join(grouped["felten_aioe"].rename("x")).dropna(subset=["x", "d_log_median_wage"])
        data = data[data["weight"] > 0]
        w = data["weight"].to_numpy()
        x = occupations.standardise(data["x"].to_numpy(), w)
        X = np.column_stack([np.ones_like(x), x])
        if fe:
            X = np.column_stack([X, pd.get_dummies(data["major"], drop_first=True, dtype=float).to_numpy()])
        b, V = occupations.weighted_least_squares(data["d_log_median_wage"].to_numpy(), X, w)
        # Same linear algebra in another order: 1e-10 relative.
        assert row["coef"] == pytest.approx(b[1], rel=1e-10)
        assert row["se"] == pytest.approx(np.sqrt(V[1, 1]), rel=1e-8)
        assert row["n"] == len(data)


# ---------------------------------------------------------------------------------------------
# Corrupted files: the loader's own error, never a crash, never silent garbage

HEADER = list(oews.REQUIRED) + ["H_MEAN"]
CODES = [f"{a:02d}-{b:04d}" for a, b in [(11, 1011), (11, 1021), (13, 2011), (15, 1252), (29, 1141), (53, 3032)]]


def _row(code, group="detailed", values=None):
    values = values or ["1000", "50000", "20000", "30000", "45000", "60000", "90000", "24.5"]
    return [code, f"Title {code}", group, *values]


def _csv(rows, header=HEADER) -> bytes:
    return pd.DataFrame(rows, columns=header).to_csv(index=False).encode()


def test_a_valid_small_file_loads(tmp_path):
    path = tmp_path / "national_M2023_dl.csv"
    path.write_bytes(_csv([_row("00-0000", "total"), *[_row(c) for c in CODES]]))
    year = oews.read_oews(path)
    assert len(year.detailed) == len(CODES) and year.detailed["a_median"].eq(45000).all()


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda rows, h: (rows, [c for c in h if c != "A_MEDIAN"]), "missing column(s) A_MEDIAN"),
        (lambda rows, h: ([], h), "no rows"),
        (lambda rows, h: (rows + [rows[1]], h), "more than once"),
        (lambda rows, h: ([r[:3] + ["lots"] + r[4:] if i == 2 else r for i, r in enumerate(rows)], h), "'lots'"),
        (lambda rows, h: (rows + [_row("1-23")], h), "not an SOC code"),
        (lambda rows, h: ([r[:2] + ["detail"] + r[3:] if i == 1 else r for i, r in enumerate(rows)], h), "unknown value"),
        (lambda rows, h: ([r for r in rows if r[2] != "detailed"], h), "no detailed occupations"),
        (lambda rows, h: ([r[:4] + ["-5"] + r[5:] if i == 1 else r for i, r in enumerate(rows)], h), "non-negative"),
    ],
)
def test_corrupted_files_raise_the_loaders_error(tmp_path, mutate, fragment):
    rows = [_row("00-0000", "total"), *[_row(c) for c in CODES]]
    rows, header = mutate(rows, HEADER)
    if len(header) < len(HEADER):
        rows = [r[: len(header)] for r in rows]
    path = tmp_path / "national_M2023_dl.csv"
    path.write_bytes(_csv(rows, header) if rows else (",".join(header) + "\n").encode())
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        oews.read_oews(path)


def test_unreadable_files_raise_the_loaders_error(tmp_path):
    cases = {
        "national_M2023_dl.xlsx": b"not a workbook",
        "national_M2022_dl.csv": b"",
        "oesm23nat.zip": b"PK\x03\x04 broken",
        "national_M2021_dl.csv": b"\xff\xfe\x00garbage\x00\x00",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError):
            oews.read_oews(tmp_path / name)
    with pytest.raises(DataError, match="no survey year"):
        (tmp_path / "wages.csv").write_bytes(b"x")
        oews.read_oews(tmp_path / "wages.csv")


CELL = st.one_of(
    st.integers(0, 10**7).map(str), st.floats(0, 1e6, allow_nan=False).map(lambda x: f"{x:.2f}"),
    st.sampled_from(["#", "*", "**", ""]), st.text(min_size=1, max_size=6),
)


@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cells=st.lists(st.lists(CELL, min_size=8, max_size=8), min_size=1, max_size=6),
    codes=st.lists(st.sampled_from(CODES + ["15-1252", "abc", "15-125"]), min_size=1, max_size=6),
    drop=st.lists(st.sampled_from(HEADER), max_size=2),
)
def test_fuzzed_files_either_load_faithfully_or_raise_data_error(tmp_path, cells, codes, drop):
    rows = [_row("00-0000", "total")] + [_row(c, values=v) for c, v in zip(codes, cells)]
    header = [h for h in HEADER if h not in drop]
    keep = [HEADER.index(h) for h in header]
    path = tmp_path / "national_M2023_dl.csv"
    path.write_bytes(_csv([[r[i] for i in keep] for r in rows], header))
    try:
        year = oews.read_oews(path)
    except DataError:
        return
    # Loaded: every numeric cell is its number, or NaN with the flag of its special value.
    for (code, values) in zip(codes, cells):
        row = year.detailed.set_index("occ_code").loc[code]
        for name, text in zip(HEADER[3:], values):
            if name not in header:
                continue
            value, flag = row[name.lower()], row[f"{name.lower()}_flag"]
            text = text.strip()
            if text in oews.SPECIAL or text == "":
                assert np.isnan(value) and flag == oews.SPECIAL.get(text, "blank")
            else:
                assert value == pytest.approx(float(text.replace(",", ""))) and flag == ""


# ---------------------------------------------------------------------------------------------
# outcome_changes against a hand computation, and the README's claims on the real data

#: Three occupations with the same detailed code in 2019 and 2023 and no special cells, across the
#: wage distribution (cooks, customer service representatives, registered nurses).
HAND_CODES = ("35-2014", "43-4051", "29-1141")


@pytest.fixture(scope="module")
def panel_2019_2023(years):
    panel, _ = oews.harmonise(years[2019], years[2023])
    return panel


def _raw_detailed(shared_data, year) -> pd.DataFrame:
    """The BLS CSV copy read directly with pandas (not the loader): detailed rows by code, numbers as floats."""
    raw = pd.read_csv(Path(shared_data) / "oews" / "csv" / f"national_M{year}_dl.csv", dtype=str,
                      keep_default_na=False)
    raw = raw[raw["O_GROUP"] == "detailed"].set_index("OCC_CODE")
    cols = ["TOT_EMP", "A_MEAN", "A_PCT10", "A_MEDIAN", "A_PCT90"]
    return raw[cols].apply(pd.to_numeric, errors="coerce")  # '#', '*', '**' -> NaN


def test_outcome_changes_equal_a_hand_computation(shared_data, panel_2019_2023):
    raw = {y: _raw_detailed(shared_data, y) for y in (2019, 2023)}
    # Two numbers read off the files, so that the hand computation itself is anchored.
    assert raw[2019].loc["29-1141", "A_MEDIAN"] == 73300 and raw[2023].loc["29-1141", "A_MEDIAN"] == 86070
    changes = occupations.outcome_changes(panel_2019_2023, 2019, 2023)
    # Employment shares are shares of the employment of the panel's occupations in each year.
    totals = {}
    for y in (2019, 2023):
        codes = {c for group in panel_2019_2023[f"codes_{y}"] for c in group.split()}
        totals[y] = raw[y].loc[sorted(codes), "TOT_EMP"].sum()
    for code in HAND_CODES:
        a, b = raw[2019].loc[code], raw[2023].loc[code]
        assert a.notna().all() and b.notna().all(), code
        hand = {
            "d_log_median_wage": math.log(b["A_MEDIAN"]) - math.log(a["A_MEDIAN"]),
            "d_log_mean_wage": math.log(b["A_MEAN"] / a["A_MEAN"]),
            "d_log_p90_p10": math.log(b["A_PCT90"] / b["A_PCT10"]) - math.log(a["A_PCT90"] / a["A_PCT10"]),
            "d_employment_share_pp": 100 * (b["TOT_EMP"] / totals[2023] - a["TOT_EMP"] / totals[2019]),
            "weight": a["TOT_EMP"],
        }
        got = changes.loc[code]
        for name, value in hand.items():
            assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-15), (code, name)
        assert got["major"] == code[:2]


@pytest.fixture(scope="module")
def regressions_2019_2023(shared_data, years, panel_2019_2023):
    """The table `levelfield oews --data DIR` prints by default (2019-2023, every measure, no FE)."""
    grouped = exposure.to_groups(exposure.load_measures(shared_data), panel_2019_2023, years[2023])
    changes = occupations.outcome_changes(panel_2019_2023, 2019, 2023)
    return occupations.regression_table(changes, grouped, fixed_effects=False).set_index(["measure", "outcome"])


def test_readme_exposure_and_median_wage_growth(regressions_2019_2023):
    """README: 'a one-SD higher exposure goes with 2-4 log points less median-wage growth for every
    measure but Tomlinson's'. Whole log points as the README rounds them: a coefficient in
    [-0.045, -0.015)."""
    table = regressions_2019_2023
    assert set(table.index.get_level_values("measure")) == set(exposure.MEASURES)
    for measure in exposure.MEASURES:
        coef = table.loc[(measure, "d_log_median_wage"), "coef"]
        in_range = -0.045 <= coef < -0.015
        assert in_range == (measure != "tomlinson_ai_applicability"), (measure, coef)


def test_readme_no_detectable_change_in_dispersion(regressions_2019_2023):
    """README: '... and with no detectable change in within-occupation dispersion': no coefficient on
    the change in log(p90/p10) is significant at 5% (two-sided, HC1)."""
    for measure in exposure.MEASURES:
        row = regressions_2019_2023.loc[(measure, "d_log_p90_p10")]
        assert row["p_value"] > 0.05, (measure, row["coef"], row["se"])


def test_oews_results_are_the_same_bytes_whatever_the_hash_seed(shared_data, tmp_path):
    """Reproducible files: two `levelfield oews` processes with different PYTHONHASHSEED (the order
    in which Python iterates sets of strings) write every file byte for byte alike. A set's order
    once leaked into report.json's special-cell counts (found by benchmarks/same_outputs.py)."""
    import os
    import subprocess
    import sys

    outs = []
    # Seeds 1 and 3 iterate {"top-coded", "wage not available"} in opposite orders (CPython 3.11).
    for seed in ("1", "3"):
        out = tmp_path / f"run{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-m", "estimation.cli", "oews", "--data", str(shared_data),
                               "--no-model", "--out", str(out)], env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == sorted(p.name for p in outs[1].iterdir()) and "report.json" in names
    for name in names:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
