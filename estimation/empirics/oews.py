"""BLS OEWS national files as two comparable years of occupations: read exactly as BLS publishes them.

BLS's national cross-industry file ``national_M{YYYY}_dl.xlsx`` (also as CSV, and inside the zip
``oesm{YY}nat.zip``) has one row per occupation and level (total, major, minor, broad, detailed).
Columns differ by year: 2019 is lower-case and has no PRIM_STATE or PCT_RPT, 2020 has no PCT_RPT.
Wage cells hold BLS's special values: '#' (wage at or above the top code), '*' (wage not
available), '**' (employment not available). They become missing values with a flag column, never
numbers. Every other non-numeric cell is an error naming the column and the occupation.

OEWS 2019 and 2020 use hybrid SOC codes, some of which combine several SOC 2018 occupations
(15-1256 = 15-1252 + 15-1253). ``harmonise`` pairs two years on identical detailed codes and forms
explicit groups of the others (same broad-occupation prefix, or one title containing the other, or
titles sharing most words within a major group), reporting what it grouped and what it dropped.
"""

from __future__ import annotations

import dataclasses
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from estimation.errors import DataError

REQUIRED = ("OCC_CODE", "OCC_TITLE", "O_GROUP", "TOT_EMP", "A_MEAN", "A_PCT10", "A_PCT25", "A_MEDIAN", "A_PCT75",
            "A_PCT90")
OPTIONAL = ("H_MEAN", "H_PCT10", "H_PCT25", "H_MEDIAN", "H_PCT75", "H_PCT90")
NUMERIC = ("TOT_EMP", "A_MEAN", "A_PCT10", "A_PCT25", "A_MEDIAN", "A_PCT75", "A_PCT90") + OPTIONAL
#: BLS special values and what they mean.
SPECIAL = {"#": "top-coded", "*": "wage not available", "**": "employment not available"}
GROUPS = ("total", "major", "minor", "broad", "detailed")
_CODE = re.compile(r"^\d{2}-\d{4}$")
_YEAR = re.compile(r"(?:national_M|M)(20\d\d)", re.IGNORECASE)
_ZIP_YEAR = re.compile(r"oesm(\d\d)nat", re.IGNORECASE)


@dataclasses.dataclass
class OewsYear:
    """One year of the national file.

    Attributes:
        year: the survey year (May reference month).
        source: the file it was read from.
        detailed: one row per detailed occupation: occ_code, title, and lower-case numeric columns
            (tot_emp, a_mean, a_pct10 .. a_pct90, h_*), with ``<column>_flag`` naming a BLS special value.
        broad: the broad-occupation rows, same columns (used for exact group percentiles).
        report: counts of rows read, kept and set aside, and of special cells by column.
    """

    year: int
    source: str
    detailed: pd.DataFrame
    broad: pd.DataFrame
    report: dict


def year_of(path: Path) -> int | None:
    """The survey year in a BLS file name (national_M2023_dl.xlsx, oesm23nat.zip), else None."""
    match = _YEAR.search(path.name)
    if match:
        return int(match.group(1))
    match = _ZIP_YEAR.search(path.name)
    return 2000 + int(match.group(1)) if match else None


def _read_raw(path: Path) -> pd.DataFrame:
    """The first sheet (xlsx), the CSV, or the national file inside a BLS zip, as strings."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                inner = [n for n in archive.namelist() if re.search(r"national_M20\d\d_dl\.(xlsx|csv)$", n, re.I)]
                if not inner:
                    raise DataError(f"{path}: the zip holds no national_M<year>_dl.xlsx or .csv (found: "
                                    f"{', '.join(archive.namelist()[:5]) or 'nothing'})")
                data = archive.read(inner[0])
            buffer = io.BytesIO(data)
            if inner[0].lower().endswith(".xlsx"):
                return pd.read_excel(buffer, sheet_name=0, dtype=str, keep_default_na=False)
            return pd.read_csv(buffer, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        if suffix == ".xlsx":
            return pd.read_excel(path, sheet_name=0, dtype=str, keep_default_na=False)
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError, KeyError, IndexError,
            pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot be read as a BLS OEWS file ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # openpyxl raises its own types for corrupt workbooks
        raise DataError(f"{path}: cannot be read as a BLS OEWS file ({type(exc).__name__}: {exc})") from None
    raise DataError(f"{path}: unknown format {suffix or '(none)'}; BLS publishes .xlsx, .csv and .zip")


def _parse_number(text: str, column: str, code: str, where: str) -> tuple[float, str]:
    raw = str(text).strip()
    if raw in SPECIAL:
        return np.nan, SPECIAL[raw]
    if raw == "":
        return np.nan, "blank"
    try:
        value = float(raw.replace(",", ""))
    except ValueError:
        raise DataError(
            f"{where}: column {column}, occupation {code}: {raw!r} is neither a number nor a BLS special "
            f"value ({', '.join(SPECIAL)})"
        ) from None
    if not np.isfinite(value) or value < 0:
        raise DataError(f"{where}: column {column}, occupation {code}: {raw!r} must be a non-negative number")
    return value, ""


def _clean(rows: pd.DataFrame, where: str) -> pd.DataFrame:
    out = pd.DataFrame({"occ_code": rows["OCC_CODE"].str.strip().to_numpy(),
                        "title": rows["OCC_TITLE"].str.strip().to_numpy()})
    for column in NUMERIC:
        if column not in rows.columns:
            continue
        parsed = [_parse_number(v, column, c, where) for v, c in zip(rows[column], out["occ_code"])]
        out[column.lower()] = np.array([p[0] for p in parsed], dtype=float)
        out[f"{column.lower()}_flag"] = [p[1] for p in parsed]
    return out


def read_oews(path: str | Path, year: int | None = None) -> OewsYear:
    """Read one BLS OEWS national file (xlsx, csv or BLS zip) and keep the detailed occupations.

    Args:
        path: the file; year: the survey year when the file name does not carry BLS's.

    Raises:
        DataError: unreadable file, missing columns, empty table, malformed or duplicated codes, text
            in numeric cells, or no year.
    """
    path = Path(path)
    if year is None:
        year = year_of(path)
        if year is None:
            raise DataError(f"{path}: no survey year in the name (BLS names it national_M2023_dl.xlsx); "
                            "rename it or pass the year")
    raw = _read_raw(path)
    raw.columns = [str(c).strip().upper() for c in raw.columns]
    if "O_GROUP" not in raw.columns and "OCC_GROUP" in raw.columns:
        raw = raw.rename(columns={"OCC_GROUP": "O_GROUP"})
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; an OEWS national file has "
                        f"{', '.join(REQUIRED)} (found {', '.join(map(str, raw.columns[:12]))})")
    if raw.empty:
        raise DataError(f"{path}: the sheet has a header but no rows")
    raw = raw.astype(str)
    group = raw["O_GROUP"].str.strip().str.lower()
    unknown = sorted(set(group) - set(GROUPS))
    if unknown:
        raise DataError(f"{path}: O_GROUP has unknown value(s) {', '.join(map(repr, unknown[:5]))}; "
                        f"allowed: {', '.join(GROUPS)}")
    detailed_rows = raw[group == "detailed"]
    if detailed_rows.empty:
        raise DataError(f"{path}: no detailed occupations (O_GROUP == 'detailed')")
    codes = detailed_rows["OCC_CODE"].str.strip()
    bad = codes[~codes.str.match(_CODE)]
    if len(bad):
        raise DataError(f"{path}: OCC_CODE {bad.iloc[0]!r} is not an SOC code like 15-1252")
    duplicated = codes[codes.duplicated()]
    if len(duplicated):
        raise DataError(f"{path}: detailed occupation {duplicated.iloc[0]} appears more than once")
    where = f"{path.name}"
    detailed = _clean(detailed_rows, where)
    broad = _clean(raw[group == "broad"], where)
    special = {
        column: {flag: int((detailed[f"{column}_flag"] == flag).sum()) for flag in sorted(set(detailed[f"{column}_flag"]) - {""})}
        for column in (c.lower() for c in NUMERIC if c in raw.columns)
    }
    report = {
        "file": str(path), "year": year, "rows": int(len(raw)),
        "rows_by_group": {g: int((group == g).sum()) for g in GROUPS},
        "detailed_kept": int(len(detailed)),
        "set_aside": {g: int((group == g).sum()) for g in GROUPS if g != "detailed"},
        "special_cells": {k: v for k, v in special.items() if v},
        "employment_detailed": float(np.nansum(detailed["tot_emp"])),
    }
    total = raw[group == "total"]
    if len(total):
        value, _ = _parse_number(total["TOT_EMP"].iloc[0], "TOT_EMP", "00-0000", where)
        report["employment_total"] = value
    return OewsYear(year=year, source=str(path), detailed=detailed, broad=broad, report=report)


def find_oews_files(folder: str | Path) -> dict[int, Path]:
    """The OEWS national file of each year under ``folder`` (searched recursively).

    Where a year is there in several formats, the workbook as BLS publishes it (xlsx) is preferred,
    then the zip, then a CSV.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--data {folder}: not a folder")
    rank = {".xlsx": 0, ".zip": 1, ".csv": 2}
    found: dict[int, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in rank or not path.is_file():
            continue
        if not re.search(r"national_M20\d\d_dl|oesm\d\dnat", path.name, re.I):
            continue
        year = year_of(path)
        if year is not None and (year not in found or rank[path.suffix.lower()] < rank[found[year].suffix.lower()]):
            found[year] = path
    return found


# ---------------------------------------------------------------------------------------------
# Harmonising two years


_GENERIC = {"and", "or", "of", "the", "all", "other", "except", "managers", "workers", "specialists", "technicians",
            "occupations", "operators", "assistants", "supervisors", "first", "line", "service", "services"}


def _words(title: str) -> set[str]:
    """Distinctive words of a title (generic occupation words removed)."""
    return {w for w in re.findall(r"[a-z]+", title.lower()) if w not in _GENERIC}


def occupation_groups(first: OewsYear, second: OewsYear) -> tuple[dict[str, str], dict[str, str], dict]:
    """Map each detailed code of both years to a harmonised group.

    Codes present in both years are their own group. The others are joined into connected groups by
    three rules between a code of one year and a code of the other: the same broad-occupation prefix
    (first six characters), one title containing the other, or titles sharing at least two
    distinctive words and half of the shorter title's within the same major group. A group is named by its codes joined with '+'.

    Returns:
        (group of each first-year code, group of each second-year code, report).
    """
    a = dict(zip(first.detailed["occ_code"], first.detailed["title"]))
    b = dict(zip(second.detailed["occ_code"], second.detailed["title"]))
    common = set(a) & set(b)
    only_a, only_b = sorted(set(a) - common), sorted(set(b) - common)
    parent = {f"a:{c}": f"a:{c}" for c in only_a} | {f"b:{c}": f"b:{c}" for c in only_b}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(x, y):
        parent[find(x)] = find(y)

    for ca in only_a:
        ta, wa = a[ca].lower().rstrip("."), _words(a[ca])
        for cb in only_b:
            tb, wb = b[cb].lower().rstrip("."), _words(b[cb])
            same_prefix = ca[:6] == cb[:6]
            contained = ta in tb or tb in ta
            shared = len(wa & wb)
            similar = ca[:2] == cb[:2] and shared >= max(2, 0.5 * min(len(wa), len(wb)))
            if same_prefix or contained or similar:
                union(f"a:{ca}", f"b:{cb}")
    members: dict[str, list[str]] = {}
    for node in parent:
        members.setdefault(find(node), []).append(node)
    group_a = {c: c for c in common}
    group_b = {c: c for c in common}
    groups, unmatched = [], {"first": [], "second": []}
    for nodes in members.values():
        codes_a = sorted(n[2:] for n in nodes if n.startswith("a:"))
        codes_b = sorted(n[2:] for n in nodes if n.startswith("b:"))
        if not codes_a or not codes_b:
            unmatched["first"] += codes_a
            unmatched["second"] += codes_b
            continue
        name = "+".join(sorted(set(codes_a) | set(codes_b)))
        for c in codes_a:
            group_a[c] = name
        for c in codes_b:
            group_b[c] = name
        groups.append({"group": name, f"codes_{first.year}": codes_a, f"codes_{second.year}": codes_b})
    report = {"common_codes": len(common), "harmonised_groups": groups, "unmatched": unmatched}
    return group_a, group_b, report


def _group_values(year: OewsYear, groups: dict[str, str]) -> pd.DataFrame:
    """Employment and wages of each group in one year.

    Employment sums; the mean wage is the employment-weighted mean (exact). Percentiles are exact for a
    group of one code, or when BLS publishes a broad row with exactly the group's codes; otherwise they
    are employment-weighted means of log percentiles and flagged "approximate".
    """
    d = year.detailed.copy()
    d["group"] = d["occ_code"].map(groups)
    d = d.dropna(subset=["group"])
    broad_codes = d.groupby(d["occ_code"].str[:6])["occ_code"].apply(set).to_dict()
    broad = year.broad.set_index(year.broad["occ_code"].str[:6])
    rows = []
    for name, part in d.groupby("group", sort=True):
        emp = part["tot_emp"]
        row = {"group": name, "title": "; ".join(part["title"]), "codes": " ".join(part["occ_code"]),
               "tot_emp": float(emp.sum(min_count=1))}
        w = emp.fillna(0.0).to_numpy()
        row["a_mean"] = float(np.sum(w * part["a_mean"]) / np.sum(w)) if np.sum(w) > 0 and part["a_mean"].notna().all() else np.nan
        exact, flags = len(part) == 1, set()
        source = part
        if not exact:
            prefix = {c[:6] for c in part["occ_code"]}
            if len(prefix) == 1:
                p = prefix.pop()
                if p in broad.index and broad_codes.get(p) == set(part["occ_code"]):
                    source, exact = broad.loc[[p]], True
        for col in ("a_pct10", "a_pct25", "a_median", "a_pct75", "a_pct90"):
            vals = source[col].to_numpy()
            marks = set(source[f"{col}_flag"]) - {""}
            flags |= {f"{col}: {m}" for m in marks}
            if exact:
                row[col] = float(vals[0])
            elif np.isnan(vals).any() or np.sum(w) <= 0:
                row[col] = np.nan
            else:
                row[col] = float(np.exp(np.sum(w * np.log(vals)) / np.sum(w)))
        row["percentiles"] = "exact" if exact else "approximate"
        row["flags"] = "; ".join(sorted(flags))
        rows.append(row)
    return pd.DataFrame(rows).set_index("group")


def harmonise(first: OewsYear, second: OewsYear) -> tuple[pd.DataFrame, dict]:
    """A panel of occupations (harmonised groups) with both years' employment and wages.

    Returns:
        (panel indexed by group with columns <variable>_<year>, report of the grouping).
    """
    group_a, group_b, report = occupation_groups(first, second)
    va = _group_values(first, group_a)
    vb = _group_values(second, group_b)
    panel = va.add_suffix(f"_{first.year}").join(vb.add_suffix(f"_{second.year}"), how="inner")
    panel["major"] = [g[:2] for g in panel.index]
    panel["soc2018_codes"] = panel[f"codes_{second.year}"]
    emp_a = float(first.detailed["tot_emp"].sum())
    emp_b = float(second.detailed["tot_emp"].sum())
    kept_a = first.detailed["occ_code"].isin(group_a)
    kept_b = second.detailed["occ_code"].isin(group_b)
    report.update({
        "years": [first.year, second.year],
        "occupations": int(len(panel)),
        "employment_share_kept": {
            str(first.year): float(first.detailed.loc[kept_a, "tot_emp"].sum() / emp_a),
            str(second.year): float(second.detailed.loc[kept_b, "tot_emp"].sum() / emp_b),
        },
        "approximate_percentiles": int((panel[f"percentiles_{first.year}"] == "approximate").sum()
                                       + (panel[f"percentiles_{second.year}"] == "approximate").sum()),
    })
    return panel, report
