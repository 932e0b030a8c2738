"""Occupation-level AI-exposure measures on SOC 2018 codes, through BLS crosswalks.

Each measure is read from its published file and expressed on 6-digit SOC 2018 codes:
- O*NET-SOC codes (XX-XXXX.XX) go to SOC through BLS's O*NET-SOC to NEM crosswalk (its NEM codes
  are SOC 2018 based); codes it does not list fall back to their first seven characters. Several
  O*NET occupations in one SOC code are averaged with equal weights (O*NET has no employment).
- SOC 2010 codes go to SOC 2018 through BLS's 2010-to-2018 crosswalk; a 2018 code fed by several
  2010 codes gets their unweighted mean.
Files are found by their published names anywhere under the data folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from estimation.errors import DataError


@dataclasses.dataclass(frozen=True)
class Measure:
    """An exposure measure: where it comes from and how to read it."""

    name: str
    file: str  # file name as published (searched for under the data folder)
    column: str
    codes: str  # "onet2019", "onet2010", "soc2010", "soc2018"
    description: str
    sheet: str | None = None


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure("eloundou_gpt4_beta", "eloundou_gpts_are_gpts_occ_level.csv", "dv_rating_beta", "onet2019",
                "Eloundou et al. (GPTs are GPTs): GPT-4 rated exposure E1 + 0.5 E2"),
        Measure("eloundou_human_beta", "eloundou_gpts_are_gpts_occ_level.csv", "human_rating_beta", "onet2019",
                "Eloundou et al.: human-rated exposure E1 + 0.5 E2"),
        Measure("felten_aioe", "felten_AIOE_DataAppendix.xlsx", "AIOE", "soc2010",
                "Felten, Raj & Seamans (2021) AI occupational exposure", sheet="Appendix A"),
        Measure("felten_lm_aioe", "felten_Language_Modeling_AIOE_AIIE.xlsx", "Language Modeling AIOE", "soc2010",
                "Felten, Raj & Seamans (2023) language-modelling AIOE", sheet="LM AIOE"),
        Measure("tomlinson_ai_applicability", "tomlinson_msft_soc_ai_applicability_scores.csv",
                "ai_applicability_score", "soc2018", "Tomlinson et al. (2025, Microsoft) AI applicability"),
        Measure("eisfeldt_genai", "eisfeldt_genaiexp_estz_occscores.csv", "genaiexp_estz_total", "soc2010",
                "Eisfeldt, Schubert, Taska & Zhang generative-AI exposure (total)"),
        Measure("webb_ai_thirdparty", "webb2020_exposure_by_soc4_thirdparty.xlsx", "ai_score", "onet2010",
                "Webb (2020) AI-patent exposure (a third-party copy, raw scores)"),
    )
}
CROSSWALK_2010_2018 = "bls_soc_2010_to_2018_crosswalk.xlsx"
CROSSWALK_ONET = "bls_nem_onet_to_soc_crosswalk.xlsx"


def find_file(folder: Path, name: str) -> Path:
    """The file called ``name`` under ``folder`` (recursive); the first in sorted order."""
    hits = sorted(p for p in Path(folder).rglob(name) if p.is_file())
    if not hits:
        raise DataError(f"{name} not found under {folder}")
    return hits[0]


def _read_table(path: Path, sheet: str | None = None, header_row: str | None = None) -> pd.DataFrame:
    """A sheet or CSV as strings; with ``header_row``, the header is the first row holding that text."""
    try:
        if path.suffix.lower() == ".xlsx":
            raw = pd.read_excel(path, sheet_name=sheet or 0, dtype=str, header=None if header_row else 0)
        else:
            raw = pd.read_csv(path, dtype=str, encoding="utf-8-sig", header=None if header_row else 0)
    except Exception as exc:  # openpyxl, pandas and OS errors alike: say which file
        raise DataError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    if header_row:
        hits = raw.index[raw.apply(lambda r: r.astype(str).str.strip().eq(header_row).any(), axis=1)]
        if len(hits) == 0:
            raise DataError(f"{path}: no header row with {header_row!r}")
        raw.columns = [str(c).strip() for c in raw.loc[hits[0]]]
        raw = raw.loc[hits[0] + 1:].reset_index(drop=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    return raw


def soc_2010_to_2018(folder: Path) -> pd.DataFrame:
    """BLS crosswalk pairs (soc2010, soc2018)."""
    path = find_file(folder, CROSSWALK_2010_2018)
    table = _read_table(path, header_row="2010 SOC Code")
    pairs = table[["2010 SOC Code", "2018 SOC Code"]].dropna()
    pairs.columns = ["soc2010", "soc2018"]
    return pairs.apply(lambda c: c.str.strip()).drop_duplicates()


def onet_to_soc(folder: Path) -> dict[str, str]:
    """BLS O*NET-SOC (2019 taxonomy) to NEM/SOC 2018 code."""
    path = find_file(folder, CROSSWALK_ONET)
    table = _read_table(path, sheet="ONET to SOC crosswalk", header_row="O*NET-SOC Code")
    table = table[["O*NET-SOC Code", "NEM Code"]].dropna()
    return dict(zip(table["O*NET-SOC Code"].str.strip(), table["NEM Code"].str.strip()))


def _numeric(values: pd.Series, path: Path, column: str) -> pd.Series:
    out = pd.to_numeric(values.str.strip().replace({"": np.nan, ".": np.nan}), errors="coerce")
    bad = values[out.isna() & values.notna() & ~values.str.strip().isin(["", "."])]
    if len(bad):
        raise DataError(f"{path}: column {column} has non-numeric value {bad.iloc[0]!r}")
    return out


def load_measure(name: str, folder: str | Path, crosswalks: dict | None = None) -> pd.Series:
    """One exposure measure on SOC 2018 codes (a Series indexed by code, name = measure).

    Raises:
        DataError: unknown measure, missing or malformed file.
    """
    if name not in MEASURES:
        raise DataError(f"unknown exposure measure {name!r}; known: {', '.join(MEASURES)}")
    measure, folder = MEASURES[name], Path(folder)
    path = find_file(folder, measure.file)
    table = _read_table(path, sheet=measure.sheet)
    code_column = next((c for c in table.columns if c.lower() in ("soc code", "o*net-soc code", "soc2010", "occ_code")), None)
    if code_column is None or measure.column not in table.columns:
        raise DataError(f"{path}: expected a code column and {measure.column!r}; found {', '.join(table.columns)}")
    codes = table[code_column].astype(str).str.strip()
    values = _numeric(table[measure.column].astype(str), path, measure.column)
    frame = pd.DataFrame({"code": codes, "value": values}).dropna()
    crosswalks = crosswalks if crosswalks is not None else {}
    if measure.codes == "onet2019":
        onet = crosswalks.get("onet") or onet_to_soc(folder)
        frame["soc2018"] = [onet.get(c, c[:7]) for c in frame["code"]]
        series = frame.groupby("soc2018")["value"].mean()
    elif measure.codes in ("soc2010", "onet2010"):
        pairs = crosswalks.get("soc2010") if crosswalks.get("soc2010") is not None else soc_2010_to_2018(folder)
        frame["soc2010"] = frame["code"].str[:7]
        by_2010 = frame.groupby("soc2010")["value"].mean()
        merged = pairs.merge(by_2010.rename("value"), left_on="soc2010", right_index=True)
        series = merged.groupby("soc2018")["value"].mean()
    else:
        series = frame.groupby(frame["code"].str[:7])["value"].mean()
    series = series[series.index.str.match(r"^\d{2}-\d{4}$")]
    series.name = name
    return series


def load_measures(folder: str | Path, names: list[str] | None = None) -> pd.DataFrame:
    """Every requested measure (default: all) as columns of one frame indexed by SOC 2018 code."""
    folder = Path(folder)
    names = list(MEASURES) if names is None else names
    crosswalks = {"onet": onet_to_soc(folder), "soc2010": soc_2010_to_2018(folder)}
    return pd.concat([load_measure(n, folder, crosswalks) for n in names], axis=1)


def to_groups(measures: pd.DataFrame, panel: pd.DataFrame, later) -> pd.DataFrame:
    """Measures on harmonised occupation groups: the employment-weighted mean over each group's SOC
    2018 codes of the later year (``later``, an OewsYear), over the codes the measure covers.

    Returns:
        group x measure values (nan where the measure covers none of the group's codes).
    """
    employment = dict(zip(later.detailed["occ_code"], later.detailed["tot_emp"].fillna(0.0)))
    codes = {group: text.split() for group, text in panel[f"codes_{later.year}"].items()}
    out = {}
    for name in measures.columns:
        column = measures[name]
        values = {}
        for group, members in codes.items():
            v = np.array([column.get(c, np.nan) for c in members], dtype=float)
            w = np.array([employment.get(c, 0.0) for c in members], dtype=float)
            ok = np.isfinite(v)
            if not ok.any():
                values[group] = np.nan
            elif w[ok].sum() > 0:
                values[group] = float(np.sum(w[ok] * v[ok]) / w[ok].sum())
            else:
                values[group] = float(v[ok].mean())
        out[name] = pd.Series(values)
    return pd.DataFrame(out).reindex(panel.index)


def coverage(grouped: pd.DataFrame, panel: pd.DataFrame, years: list) -> pd.DataFrame:
    """Per measure and year: occupations (harmonised groups) with a value, and their employment share."""
    rows = []
    for name in grouped.columns:
        has = grouped[name].notna()
        for y in years:
            emp = panel[f"tot_emp_{y}"].fillna(0.0)
            rows.append({"measure": name, "year": y, "occupations": int(has.sum()), "of": int(len(panel)),
                         "employment_share": float(emp[has].sum() / emp.sum())})
    return pd.DataFrame(rows)
