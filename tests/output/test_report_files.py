"""The presentation of a finished run, from the files of its results folder alone (issue 14).

Three small results folders are made once, by the command line (``calibrate``, ``regimes``,
``oews``), with the settings other test files use, so that in the whole suite their compiled
programs come from the session's cache. Then:

- the LaTeX tables of a calibration (``estimates.tex``, ``moments.tex``, ``sensitivity.tex``) have
  booktabs structure, one body row per parameter or target, and numbers equal to the CSVs' after
  rounding; they compile in a minimal document if ``pdflatex`` is on PATH;
- ``report.html`` of each kind holds every table, every PNG of its folder as a data URI, no
  network reference and no script;
- the view of a calibration's folder (``estimation.output.view``), read back from its files, equals
  the view the run produced in memory and the numbers of its report.json; the page has one section
  per entry of the shared list, in its order;
- the template escapes: the fixture's targets file has a ``source`` holding ``<script>``, which the
  page shows as text, as it does a ``<script>`` in a note;
- headless Chromium loads each report from a file:// URL: its screenshot is a real, not blank,
  picture and its DOM has the tables and the images. ``LEVELFIELD_SCREENSHOT=docs/report.png``
  copies the calibration's screenshot there (the README's picture):
  ``LEVELFIELD_SCREENSHOT=docs/report.png python3 -m pytest -q tests/output/test_report_files.py``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from estimation.errors import OutputError
from estimation.output import sections, tables
from estimation.output.html import build_report, folder_kind
from estimation.output.latex import write_latex_tables
from estimation.output.view import calibration_from_report, calibration_view, read_calibration
from tests.helpers import run_cli

CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).is_file()), None)
PDFLATEX = shutil.which("pdflatex")
NO_CHROMIUM = "headless Chromium not found (/usr/bin/chromium; Debian package chromium, installed by .ci/run)"
NO_PDFLATEX = "pdflatex not on PATH (Debian packages texlive-latex-base texlive-latex-recommended)"


def _cli(*argv: str) -> None:
    code, out, err = run_cli(*argv)
    assert code == 0, (out + err)[-3000:]


#: A target's source that a page must show as text, never run.
SCRIPT = '<script>alert("levelfield")</script> & more'

#: The view the fixture's run produced in memory (recorded by its terminal report).
PRODUCED: dict = {}


def scaled_sensitivity(folder: Path) -> pd.DataFrame:
    return read_calibration(folder).sensitivity.scaled_frame()


@pytest.fixture(scope="module")
def calibrate_dir(tmp_path_factory) -> Path:
    # The command of tests/msm/test_calibration.py: the same compiled programs. The targets are the
    # shipped ones, with a source that holds a script.
    base = tmp_path_factory.mktemp("report")
    shipped = pd.read_csv(Path(__file__).resolve().parents[2] / "estimation" / "data" / "targets_default.csv")
    shipped.loc[0, "source"] = SCRIPT
    targets = base / "targets.csv"
    shipped.to_csv(targets, index=False)
    out = base / "calibrate"
    report = tables.calibration_report

    def record(result):
        PRODUCED["view"] = calibration_view(result)
        report(result)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tables, "calibration_report", record)
        _cli("calibrate", "--agents", "5000", "--firms", "50", "--starts", "2", "--sim-sets", "6", "--max-iter", "25",
             "--targets", str(targets), "--out", str(out))
    return out


@pytest.fixture(scope="module")
def regimes_dir(tmp_path_factory) -> Path:
    # The command of tests/regimes/test_regimes.py.
    out = tmp_path_factory.mktemp("report") / "regimes"
    _cli("regimes", "--grid", "3", "--agents", "4000", "--firms", "40", "--out", str(out))
    return out


@pytest.fixture(scope="module")
def oews_dir(tmp_path_factory, shared_data) -> Path:
    out = tmp_path_factory.mktemp("report") / "oews"
    _cli("oews", "--data", str(shared_data), "--no-model", "--out", str(out))
    return out


# --- LaTeX ---------------------------------------------------------------------------------------

_NUMBER = re.compile(r"([+-]?\d+(?:\.\d+)?)(?:\\times10\^\{(-?\d+)\})?")


def _numbers(cell: str) -> list[tuple[float, float]]:
    """The numbers of a table cell as (value, half a unit of its last printed digit)."""
    found = []
    for math_part in re.findall(r"\$([^$]*)\$", cell):
        for mantissa, exponent in _NUMBER.findall(math_part):
            decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
            scale = 10.0 ** int(exponent) if exponent else 1.0
            found.append((float(mantissa) * scale, 0.5 * 10.0 ** -decimals * scale * (1 + 1e-9)))
    return found


def _body_rows(tex: str) -> list[list[str]]:
    assert tex.count("\\begin{tabular}") == 1 and tex.count("\\end{tabular}") == 1
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert tex.count(rule) == 1, rule
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule") < tex.index("\\end{tabular}")
    body = tex[tex.index("\\midrule") + len("\\midrule"):tex.index("\\bottomrule")]
    rows = [r.strip() for r in body.split("\\\\") if r.strip()]
    return [[c.strip() for c in r.split(" & ")] for r in rows]


def _unescape(name: str) -> str:
    name = re.sub(r"\\rlap\{\\textsuperscript\{[a-z]\}\}", "", name)
    return name.replace("\\_", "_").replace("\\&", "&").replace("\\%", "%")


def _close(found: tuple[float, float], value: float) -> bool:
    shown, half = found
    return abs(shown - value) <= half


def _check_estimates(tex: str, folder: Path) -> None:
    est = pd.read_csv(folder / "estimates.csv", keep_default_na=False, na_values=[""])
    rows = _body_rows(tex)
    assert [_unescape(r[0]) for r in rows] == list(est["parameter"])
    for row, rec in zip(rows, est.to_dict("records")):
        assert len(row) == 4
        (estimate,) = _numbers(row[1])
        assert _close(estimate, rec["estimate"]), (row, rec)
        if math.isnan(rec["se"]):
            assert row[2].startswith("---\\rlap{\\textsuperscript{")
        else:
            assert row[2].startswith("$(") and row[2].endswith(")$")
            (se,) = _numbers(row[2])
            assert _close(se, rec["se"]), (row, rec)
        if math.isnan(rec["ci_lower"]):
            assert row[3] == "---"
        else:
            low, high = _numbers(row[3])
            assert _close(low, rec["ci_lower"]) and _close(high, rec["ci_upper"]), (row, rec)


def test_latex_tables_structure_and_numbers(calibrate_dir):
    paths = write_latex_tables(calibrate_dir)
    assert [p.name for p in paths] == ["estimates.tex", "moments.tex", "sensitivity.tex"]
    assert all(p.parent == calibrate_dir for p in paths)
    est = pd.read_csv(calibrate_dir / "estimates.csv")
    mom = pd.read_csv(calibrate_dir / "moments.csv")

    estimates = (calibrate_dir / "estimates.tex").read_text()
    _check_estimates(estimates, calibrate_dir)
    report = json.loads((calibrate_dir / "report.json").read_text())
    notes = estimates[estimates.index("\\end{tabular}"):]
    assert "$N = 5{,}000$" in notes and "6 independent draw sets" in notes
    j = report["j_test"]
    (j_shown,) = _numbers(re.search(r"\$J = [^$]*\$", notes).group(0))
    (p_shown,) = _numbers(re.search(r"\$p = [^$]*\$", notes).group(0))
    assert _close(j_shown, j["J"]) and _close(p_shown, j["p_value"]) and f"({j['df']} d.f.)" in notes
    assert "Weighting: diagonal" in notes

    rows = _body_rows((calibrate_dir / "moments.tex").read_text())
    assert [_unescape(r[0]) for r in rows] == list(mom["moment"])
    for row, rec in zip(rows, mom.to_dict("records")):
        values = [_numbers(c)[0] for c in row[1:]]
        for shown, col in zip(values, ("target", "se", "model", "error_in_se")):
            assert _close(shown, rec[col]), (row, col, rec[col])

    sens = (calibrate_dir / "sensitivity.tex").read_text()
    rows = _body_rows(sens)
    scaled = scaled_sensitivity(calibrate_dir)
    lam = pd.read_csv(calibrate_dir / "sensitivity.csv", index_col=0)
    # Scaled by the SEs: Lambda_pm * se_m / se_p, from the CSVs themselves.
    expected = lam.to_numpy() * mom.set_index("moment").loc[lam.columns, "se"].to_numpy()[None, :] \
        / est.set_index("parameter").loc[lam.index, "se"].to_numpy()[:, None]
    np.testing.assert_allclose(scaled.to_numpy(), expected, rtol=1e-12)
    assert [_unescape(r[0]) for r in rows] == list(lam.index) == list(est["parameter"])
    for row, values in zip(rows, expected):
        assert len(row) == 1 + lam.shape[1]
        for cell, value in zip(row[1:], values):
            # A parameter without an SE has no scaled sensitivity: a dash.
            assert cell == "---" if math.isnan(value) else _close(_numbers(cell)[0], value), (cell, value)
    header = sens[sens.index("\\toprule"):sens.index("\\midrule")]
    assert header.count("$m_{") == 6
    # Names are escaped everywhere: no bare underscore outside math mode.
    for tex in (estimates, sens, (calibrate_dir / "moments.tex").read_text()):
        text_only = re.sub(r"\$[^$]*\$", "", tex)
        assert not re.search(r"(?<!\\)_", text_only)


def _variant(src: Path, dst: Path, variant: str) -> Path:
    """A copy of a calibration folder whose sigma_nu row is edited.

    ``note``: no SE, with a reason in ``se_note``; ``no-note``: no SE and no ``se_note`` column;
    ``old``: the files before ``se_note`` existed (a finite SE, flagged as at its lower bound).
    """
    shutil.copytree(src, dst)
    est = pd.read_csv(dst / "estimates.csv", keep_default_na=False, na_values=[""])
    at = est["parameter"] == "sigma_nu"
    if variant == "note":
        est.loc[at, ["se", "ci_lower", "ci_upper"]] = np.nan
        est["se_note"] = ""
        est.loc[at, "se_note"] = "at its lower bound 0 (binding): no standard error"
    else:
        est = est.drop(columns=[c for c in ("se_note", "interval") if c in est])
        est.loc[at, ["se", "ci_lower", "ci_upper"]] = np.nan if variant == "no-note" else (1.234, -2.0, 2.0)
        est.loc[at, "at_bound"] = "lower"
    est.to_csv(dst / "estimates.csv", index=False)
    return dst


def test_latex_and_html_with_and_without_se_note(calibrate_dir, tmp_path):
    cases = (("note", "At its lower bound 0 (binding): no standard error."),
             ("no-note", "Standard error not available."),
             ("old", "At its lower bound (0): the standard error assumes an interior optimum and is not valid there."))
    for variant, reason in cases:
        folder = _variant(calibrate_dir, tmp_path / variant, variant)
        write_latex_tables(folder)
        estimates = (folder / "estimates.tex").read_text()
        _check_estimates(estimates, folder)
        row = next(r for r in _body_rows(estimates) if _unescape(r[0]) == "sigma_nu")
        marker = "\\rlap{\\textsuperscript{a}}"
        if variant == "old":
            assert row[1].endswith(marker) and row[2] == "$(1.234)$"
        else:
            assert row[2] == "---" + marker
        assert "\\textsuperscript{a}" + reason in estimates
        sens_row = next(r for r in _body_rows((folder / "sensitivity.tex").read_text()) if "nu" in r[0])
        if variant != "old":
            assert sens_row[1:] == ["---"] * 6
        page = build_report(folder).read_text()
        assert reason.lower()[:24] in page.lower()


def test_latex_tables_compile(calibrate_dir, tmp_path):
    if PDFLATEX is None:
        pytest.skip(NO_PDFLATEX)
    missing = _variant(calibrate_dir, tmp_path / "missing", "note")
    write_latex_tables(calibrate_dir)
    write_latex_tables(missing)
    inputs = "\n".join(
        f"\\begin{{table}}[h]\\centering\\input{{{(folder / name).as_posix()}}}\\caption{{{name[:-4]}}}\\end{{table}}"
        for folder in (calibrate_dir, missing) for name in ("estimates.tex", "moments.tex", "sensitivity.tex"))
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + inputs
                   + "\n\\end{document}\n")
    proc = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    # Every table fits the text width of a plain article.
    assert "Overfull \\hbox" not in log, log[-3000:]


def test_latex_refuses_other_folders(regimes_dir, tmp_path):
    with pytest.raises(OutputError, match="estimates.csv"):
        write_latex_tables(regimes_dir)
    with pytest.raises(OutputError, match=re.escape(str(tmp_path))):
        write_latex_tables(tmp_path)


# --- HTML ----------------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Tables (id -> rows of cell texts), image sources and every href/src of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self.scripts = 0
        self._table = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [v for k, v in attrs.items() if k in ("href", "src") and v]
        if tag == "table":
            self._table = attrs.get("id", f"anonymous{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


CALIBRATE_TABLES = ("summary", "estimates", "fit", "j_test", "singular_values", "sensitivity", "sensitivity_raw",
                    "delta_gini", "delta_gini_parameters", "flip_checks", "convergence", "start_points",
                    "fixed_point", "configuration")
OEWS_TABLES = ("summary", "regressions_0", "regressions_full", "coverage")
REGIMES_TABLES = ("summary", "boundary_0", "boundary_1", "map_xi_gini_K", "map_eta1_xi")


def _expected_tables(kind: str) -> tuple[str, ...]:
    return {"calibrate": CALIBRATE_TABLES, "regimes": REGIMES_TABLES, "oews": OEWS_TABLES}[kind]


def _check_self_contained(folder: Path, text: str) -> _Page:
    page = _parse(text)
    assert not re.search(r"https?://", text), re.search(r".{80}https?://.{80}", text)
    assert page.scripts == 0 and "<script" not in text.lower()
    # Nothing is loaded from anywhere: the only sources are data URIs and in-page anchors.
    assert all(link.startswith(("data:image/png;base64,", "#")) for link in page.links), page.links
    pngs = sorted(folder.glob("*.png"))
    assert pngs and len(page.images) == len(pngs)
    for png in pngs:
        assert f"data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}" in page.images, png.name
    return page


def test_html_report_of_a_calibration(calibrate_dir, tmp_path):
    path = build_report(calibrate_dir)
    assert path == calibrate_dir / "report.html" and folder_kind(calibrate_dir) == "calibrate"
    text = path.read_text(encoding="utf-8")
    page = _check_self_contained(calibrate_dir, text)
    for name in CALIBRATE_TABLES:
        assert f"T_{name}" in page.tables, name
    est = pd.read_csv(calibrate_dir / "estimates.csv")
    rows = page.tables["T_estimates"]
    assert rows[0][:3] == ["parameter", "estimate", "se"]
    assert [r[0] for r in rows[1:]] == list(est["parameter"])
    for row, rec in zip(rows[1:], est.to_dict("records")):
        assert float(row[1]) == pytest.approx(rec["estimate"], rel=5e-4, abs=1e-12)
        if math.isnan(rec["se"]):
            assert row[2] == "\u2014" and row[6]  # a dash, and the reason in the note column
        else:
            assert float(row[2]) == pytest.approx(rec["se"], rel=5e-4)
    mom = pd.read_csv(calibrate_dir / "moments.csv")
    assert [r[1] for r in page.tables["T_fit"][1:]] == list(mom["moment"])
    delta_gini = pd.read_csv(calibrate_dir / "delta_gini.csv")
    assert [r[0] for r in page.tables["T_delta_gini"][1:]] == list(delta_gini["moment"])
    assert len(page.tables["T_convergence"]) == 1 + 2 and "(best)" in text
    scaled = scaled_sensitivity(calibrate_dir)
    for row, values in zip(page.tables["T_sensitivity"][1:], scaled.to_numpy()):
        shown = [math.nan if c == "\u2014" else float(c) for c in row[1:]]
        assert shown == pytest.approx(values, abs=0.005 + 1e-12, nan_ok=True)
    # Rebuilt from the files alone, anywhere, byte for byte.
    copy = shutil.copytree(calibrate_dir, tmp_path / "moved" / calibrate_dir.name)
    (copy / "report.html").unlink()
    assert build_report(copy).read_bytes() == text.encode("utf-8")


def test_html_report_of_regimes(regimes_dir):
    text = build_report(regimes_dir).read_text(encoding="utf-8")
    assert folder_kind(regimes_dir) == "regimes"
    page = _check_self_contained(regimes_dir, text)
    for name in REGIMES_TABLES:
        assert f"T_{name}" in page.tables, name
    boundary = pd.read_csv(regimes_dir / "boundary.csv")
    for k, (_, part) in enumerate(boundary.groupby("structure", sort=False)):
        rows = page.tables[f"T_boundary_{k}"][1:]
        assert [float(r[0]) for r in rows] == pytest.approx(list(part["xi"]), abs=5e-4)


def test_html_report_of_oews(oews_dir):
    text = build_report(oews_dir).read_text(encoding="utf-8")
    assert folder_kind(oews_dir) == "oews"
    page = _check_self_contained(oews_dir, text)
    for name in OEWS_TABLES:
        assert f"T_{name}" in page.tables, name
    reg = pd.read_csv(oews_dir / "regressions.csv")
    measures = list(dict.fromkeys(reg["measure"]))
    assert [r[0] for r in page.tables["T_regressions_0"][1:]] == measures
    first = reg.iloc[0]
    assert f"{first['coef']:+.4f}" in page.tables["T_regressions_0"][1][1]
    assert [r[0] for r in page.tables["T_coverage"][1:]] == measures
    assert len(page.tables["T_regressions_full"]) == 1 + len(reg)


def test_report_refuses_other_folders(tmp_path):
    with pytest.raises(OutputError, match="not a folder"):
        build_report(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("not results")
    with pytest.raises(OutputError) as err:
        build_report(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message
    assert all(name in message for name in ("estimates.csv", "boundary.csv", "regressions.csv"))
    assert not (tmp_path / "report.html").exists()


# --- a real browser ------------------------------------------------------------------------------


def _chromium(url: str, *extra: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="levelfield-chromium-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", *extra, url], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.parametrize("kind", ["calibrate", "regimes", "oews"])
def test_report_in_a_browser(kind, request, tmp_path):
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    import matplotlib.image

    folder = request.getfixturevalue(f"{kind}_dir")
    path = build_report(folder)
    url = path.resolve().as_uri()
    shot = tmp_path / "report.png"
    # One start of the browser: the screenshot to a file, the DOM after loading to stdout.
    proc = _chromium(url, f"--screenshot={shot}", "--window-size=1280,4000", "--dump-dom")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-3000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (4000, 1280)
    rgb = np.round(pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    colours = np.unique(rgb[:, 0].astype(np.uint32) << 16 | rgb[:, 1].astype(np.uint32) << 8 | rgb[:, 2])
    # Text, tables and the embedded figures: thousands of colours, and far from a white page.
    assert colours.size > 1000, colours.size
    assert (rgb.min(axis=1) < 200).mean() > 0.02
    target = os.environ.get("LEVELFIELD_SCREENSHOT")
    if target and kind == "calibrate":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)

    page = _parse(proc.stdout)
    for name in _expected_tables(kind):
        assert f"T_{name}" in page.tables, name
    assert len(page.images) == len(list(folder.glob("*.png")))
    assert all(src.startswith("data:image/png;base64,") for src in page.images)


# --- the view and the template -------------------------------------------------------------------


def test_view_of_the_folder_equals_the_view_of_the_run(calibrate_dir):
    from_files = dataclasses.asdict(read_calibration(calibrate_dir))
    # Exactly (NaN equal to NaN): the CSVs and report.json round-trip float64.
    np.testing.assert_equal(from_files, dataclasses.asdict(PRODUCED["view"]))
    report = json.loads((calibrate_dir / "report.json").read_text("utf-8"))
    np.testing.assert_equal(from_files, dataclasses.asdict(calibration_from_report(report)))
    view = read_calibration(calibrate_dir)
    assert [e.parameter for e in view.estimates] == list(pd.read_csv(calibrate_dir / "estimates.csv")["parameter"])
    assert view.sensitivity.scaled.shape == (len(view.estimates), len(view.moments))


def test_page_sections_are_the_shared_list(calibrate_dir):
    text = build_report(calibrate_dir).read_text(encoding="utf-8")
    figures = [p.name for p in sorted(calibrate_dir.glob("*.png"))]
    expected = [s.id for s in sections.calibration_sections(read_calibration(calibrate_dir), figures)]
    assert re.findall(r'<section id="([^"]+)">', text) == expected
    assert expected[0] == "summary" and "convergence" in expected


def test_template_escapes_the_folder_text(calibrate_dir, tmp_path):
    text = build_report(calibrate_dir).read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "&lt;script&gt;" in text
    page = _parse(text)
    assert page.scripts == 0
    sources = [row[-1] for row in page.tables["T_fit"][1:]]
    assert sources[0] == SCRIPT  # shown as text
    # A note of the page's own template (not a pandas table) is escaped too.
    folder = _variant(calibrate_dir, tmp_path / "note", "note")
    est = pd.read_csv(folder / "estimates.csv", keep_default_na=False, na_values=[""])
    est.loc[est["parameter"] == "sigma_nu", "se_note"] = "<script>alert(1)</script> binding"
    est.to_csv(folder / "estimates.csv", index=False)
    text = build_report(folder).read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    warn = re.search(r'<p class="warn">(.*?)</p>', text, re.S).group(1)
    assert "sigma_nu: &lt;script&gt;alert(1)&lt;/script&gt; binding." in warn
