"""Bad input anywhere in the command line gets the project's own one-line error and exit code 2.

Each case is a command line (with ``{tmp}`` for a folder of prepared bad files) and a fragment the
error must contain: the fragment names what is wrong, and usually what is allowed. Every case must
be refused before any heavy work: none of them compiles or simulates the model, so the whole table
runs in seconds (a case that slipped through validation would start a calibration and show up as
a slow test). Two cases run as real subprocesses to check the exit status and that no traceback
reaches the terminal.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from estimation.cli import main
from tests.helpers import TARGETS_CSV
from jaxmodel import DOMAINS, MOMENT_NAMES

GOOD_TARGETS = TARGETS_CSV
SMALL = ["--agents", "2000", "--firms", "20"]
CAL = ["calibrate", *SMALL, "--max-iter", "1", "--starts", "1", "--sim-sets", "2", "--flip-checks", "0", "--quiet"]
SIM = ["simulate", *SMALL]


def _bad_files(tmp: Path) -> None:
    """Write every malformed input file the cases below point at."""
    t = tmp / "targets"
    t.mkdir()
    (t / "columns.csv").write_text("moment,estimate,se\ncv_change,1,1\n")
    (t / "text.csv").write_text(GOOD_TARGETS.replace("0.25,0.05", "quarter,0.05"))
    (t / "nan.csv").write_text(GOOD_TARGETS.replace("0.25,0.05", "nan,0.05"))
    (t / "inf.csv").write_text(GOOD_TARGETS.replace("0.25,0.05", "0.25,inf"))
    (t / "negative_se.csv").write_text(GOOD_TARGETS.replace("0.25,0.05", "0.25,-0.05"))
    (t / "zero_se.csv").write_text(GOOD_TARGETS.replace("0.25,0.05", "0.25,0"))
    (t / "duplicated.csv").write_text(GOOD_TARGETS + "gini_change,0.002,0.004,again\n")
    # Four rows: a valid file (issue 22 item 7) that targets four moments, too few for five free parameters.
    (t / "missing.csv").write_text(GOOD_TARGETS.replace("gini_change,0.001,0.004,f\n", "")
                                   .replace("between_firm_share_change,0.01,0.01,e\n", ""))
    (t / "unknown.csv").write_text(GOOD_TARGETS.replace("gini_change", "gini"))
    (t / "empty.csv").write_text("")
    (t / "latin1.csv").write_bytes(GOOD_TARGETS.replace(",a\n", ",caf\xe9\n").encode("latin-1"))
    (t / "targets.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    (t / "broken.toml").write_text("[[target]\nmoment = ")
    (t / "binary.csv").write_bytes(b"moment,value,se\x00\x01\x02")
    w = tmp / "weights"
    w.mkdir()
    eye = pd.DataFrame(np.eye(6), index=MOMENT_NAMES, columns=MOMENT_NAMES)
    eye.iloc[0, 1] = 0.5
    eye.to_csv(w / "asymmetric.csv")
    neg = pd.DataFrame(-np.eye(6), index=MOMENT_NAMES, columns=MOMENT_NAMES)
    neg.to_csv(w / "negative.csv")
    labels = pd.DataFrame(np.eye(6), index=[f"x{i}" for i in range(6)], columns=MOMENT_NAMES)
    labels.to_csv(w / "labels.csv")
    text = pd.DataFrame(np.eye(6), index=MOMENT_NAMES, columns=MOMENT_NAMES).astype(object)
    text.iloc[2, 2] = "one"
    text.to_csv(w / "text.csv")
    (tmp / "exists").mkdir()
    (tmp / "a_file").write_text("not a folder")
    d = tmp / "data"
    d.mkdir()
    (d / "national_M2019_dl.xlsx").write_bytes(b"\x00garbage that is not a workbook")
    (d / "national_M2023_dl.csv").write_text("OCC_CODE,OCC_TITLE\n11-1011,Chief Executives\n")
    cols = tmp / "data_columns"
    cols.mkdir()
    for year in (2019, 2023):
        (cols / f"national_M{year}_dl.csv").write_text("OCC_CODE,OCC_TITLE\n11-1011,Chief Executives\n")
    (tmp / "empty_data").mkdir()
    import json

    (tmp / "changed_report.json").write_text(json.dumps({
        "config": {"targets": str(t / "zero_se.csv")},
        "inputs": {"targets": {"path": str(t / "zero_se.csv"), "sha256": "0" * 64}},
    }))
    (tmp / "not_a_report.json").write_text("{this is not json")
    (tmp / "foreign_report.json").write_text('{"config": {"n_agents": 2000, "colour": "blue"}}')
    (tmp / "no_report").mkdir()


CASES = [
    # Parameters outside their domain (MODEL.md section 3), through --set.
    ("sigma-zero", [*SIM, "--set", "sigma=0"], "sigma"),
    ("sigma-negative", [*SIM, "--set", "sigma=-1"], "sigma"),
    ("gamma-open-bound", [*SIM, "--set", "gamma=-1"], "gamma"),
    ("rho-excluded-zero", [*SIM, "--set", "rho=0", "--spec", "ces"], "rho"),
    ("z-lo-above-one", [*SIM, "--set", "z_lo=1.5"], "z_lo"),
    ("omega-above-one", [*SIM, "--set", "omega=2"], "omega"),
    ("tau-zero", [*SIM, "--set", "tau=0"], "tau"),
    ("gini-K-one", [*SIM, "--set", "gini_K=1"], "gini_K"),
    ("A1-negative", [*SIM, "--set", "A1=-0.5"], "A1"),
    # Malformed --set.
    ("set-unknown-name", [*SIM, "--set", "beta=1"], "unknown parameter"),
    ("set-no-equals", [*SIM, "--set", "xi"], "NAME=VALUE"),
    ("set-not-a-number", [*SIM, "--set", "xi=high"], "must be a number"),
    ("set-nan", [*SIM, "--set", "xi=nan"], "must be finite"),
    ("set-inf", [*SIM, "--set", "xi=inf"], "must be finite"),
    ("set-twice", [*SIM, "--set", "xi=0.1", "--set", "xi=0.2"], "given twice"),
    # Settings outside their domain.
    ("agents-zero", ["simulate", "--agents", "0"], "must be >= 1"),
    ("agents-text", ["simulate", "--agents", "many"], "not a whole number"),
    ("agents-not-multiple-of-firms", ["simulate", "--agents", "2001", "--firms", "20"], "multiple"),
    ("occupations-not-divisor", [*SIM, "--occupations", "7"], "multiple"),
    ("more-firms-than-agents", ["simulate", "--agents", "100", "--firms", "200", "--occupations", "10"], "n_firms"),
    ("tasks-zero", [*SIM, "--tasks", "0"], "must be >= 1"),
    ("spec-unknown", [*SIM, "--spec", "cobb-douglas"], "invalid choice"),
    ("precision-unknown", [*SIM, "--precision", "float16"], "invalid choice"),
    ("seed-negative", [*SIM, "--seed", "-1"], "[0, 2^32)"),
    ("seed-too-large", [*SIM, "--seed", str(2**32)], "[0, 2^32)"),
    ("unknown-option", [*SIM, "--agnets", "5"], "unrecognized arguments"),
    ("unknown-command", ["estimate"], "invalid choice"),
    # Estimation options.
    ("free-unknown", [*CAL, "--free", "alpha,beta"], "beta"),
    ("free-twice", [*CAL, "--free", "xi,xi"], "xi"),
    ("free-and-fixed", [*CAL, "--free", "xi", "--set", "xi=0.2"], "cannot also be fixed"),
    ("bound-reversed", [*CAL, "--bound", "xi=0.5:0.1"], "xi"),
    ("bound-text", [*CAL, "--bound", "xi=low:high"], "xi"),
    ("bound-outside-domain", [*CAL, "--bound", "xi=-1:0.5"], "xi"),
    ("optimizer-unknown", [*CAL, "--optimizer", "newton"], "choose from lm, lm-box, lbfgs, adam"),
    ("bound-malformed", [*CAL, "--bound", "sigma"], "sigma"),
    ("bound-not-free", [*CAL, "--bound", "tau=0.1:1"], "tau"),
    ("starts-zero", [*CAL, "--starts", "0"], "must be >= 1"),
    ("max-iter-zero", [*CAL, "--max-iter", "0"], "must be >= 1"),
    ("sim-sets-one", [*CAL, "--sim-sets", "1"], "n_sim"),
    ("flip-checks-negative", [*CAL, "--flip-checks", "-1"], "flip_checks"),
    ("regime-draws-negative", [*CAL, "--regime-draws", "-1"], "regime_draws=-1 must be an integer >= 0"),
    ("damping-zero", [*CAL, "--fp-damping", "0"], "fp_damping"),
    ("damping-above-one", [*CAL, "--fp-damping", "1.5"], "fp_damping"),
    ("weights-unknown-kind", [*CAL, "--weights", "optimum"], "not one of"),
    ("weights-asymmetric", [*CAL, "--weights", "{tmp}/weights/asymmetric.csv"], "symmetric"),
    ("weights-not-positive-definite", [*CAL, "--weights", "{tmp}/weights/negative.csv"], "positive definite"),
    ("weights-wrong-labels", [*CAL, "--weights", "{tmp}/weights/labels.csv"], "labelled"),
    ("weights-text", [*CAL, "--weights", "{tmp}/weights/text.csv"], "must be a number"),
    # Target files.
    ("targets-missing-file", [*CAL, "--targets", "{tmp}/targets/nowhere.csv"], "does not exist"),
    ("targets-wrong-columns", [*CAL, "--targets", "{tmp}/targets/columns.csv"], "missing column(s) value"),
    ("targets-non-numeric", [*CAL, "--targets", "{tmp}/targets/text.csv"], "is not a number"),
    ("targets-nan", [*CAL, "--targets", "{tmp}/targets/nan.csv"], "must be finite"),
    ("targets-inf", [*CAL, "--targets", "{tmp}/targets/inf.csv"], "must be finite"),
    ("targets-negative-se", [*CAL, "--targets", "{tmp}/targets/negative_se.csv"], "must be > 0"),
    ("targets-zero-se", [*CAL, "--targets", "{tmp}/targets/zero_se.csv"], "must be > 0"),
    ("targets-duplicated", [*CAL, "--targets", "{tmp}/targets/duplicated.csv"], "appears twice"),
    ("targets-fewer-moments-than-free", [*CAL, "--targets", "{tmp}/targets/missing.csv"],
     "4 targeted moment(s) (cv_change, productivity_gain, college_premium_change, credential_reliance_change) "
     "cannot identify 5 free parameters"),
    ("moments-fewer-than-free", [*CAL, "--moments", "m1,m2,m3", "--free", "alpha,sigma,eta1,xi"],
     "--moments: 3 moment(s) cannot identify 4 free parameters"),
    ("moments-unknown", [*CAL, "--moments", "m1,m9"], "--moments: unknown moment 'm9'"),
    ("moments-twice", [*CAL, "--moments", "m1,cv_change"], "--moments: cv_change is given twice"),
    ("moments-without-target", [*CAL, "--targets", "{tmp}/targets/missing.csv", "--free", "alpha,xi",
                                "--moments", "m1,m6"], "--moments: no target for gini_change"),
    ("targets-unknown-moment", [*CAL, "--targets", "{tmp}/targets/unknown.csv"], "unknown moment 'gini'"),
    ("targets-empty", [*CAL, "--targets", "{tmp}/targets/empty.csv"], "empty file"),
    ("targets-latin1", [*CAL, "--targets", "{tmp}/targets/latin1.csv"], "not UTF-8"),
    ("targets-xlsx", [*CAL, "--targets", "{tmp}/targets/targets.xlsx"], "use .csv or .toml"),
    ("targets-broken-toml", [*CAL, "--targets", "{tmp}/targets/broken.toml"], "not valid TOML"),
    ("targets-binary", [*CAL, "--targets", "{tmp}/targets/binary.csv"], "NUL bytes"),
    # Results folders.
    ("out-exists", [*CAL, "--out", "{tmp}/exists"], "already exists"),
    ("out-is-a-file", [*CAL, "--out", "{tmp}/a_file"], "not a folder"),
    ("out-under-a-file", [*CAL, "--out", "{tmp}/a_file/results"], "is a file"),
    ("resume-nothing", [*CAL, "--out", "{tmp}/fresh", "--resume"], "no interrupted run"),
    ("replay-missing", ["calibrate", "--replay", "{tmp}/nowhere.json"], "file not found"),
    ("replay-not-json", ["calibrate", "--replay", "{tmp}/not_a_report.json"], "not a levelfield report.json"),
    ("replay-foreign-keys", ["calibrate", "--replay", "{tmp}/foreign_report.json"], "unknown configuration key(s) colour"),
    ("replay-input-changed", ["calibrate", "--replay", "{tmp}/changed_report.json"], "changed since the recorded run"),
    ("regimes-out-exists", ["regimes", *SMALL, "--out", "{tmp}/exists"], "already exists"),
    ("regimes-grid-small", ["regimes", *SMALL, "--grid", "2"], "at least 3"),
    ("regimes-from-nothing", ["regimes", "--from", "{tmp}/no_report"], "no report.json"),
    ("scenario-unknown", ["scenario", "tax-the-robots", *SMALL], "unknown scenario"),
    ("scenario-csv-exists", ["scenario", "all", *SMALL, "--csv", "{tmp}/a_file"], "already exists"),
    ("panel-power-reps", ["panel-power", *SMALL, "--reps", "5"], "at least 20"),
    ("panel-power-sizes", ["panel-power", *SMALL, "--sizes", "0"], "must be >= 1"),
    # Data files.
    ("oews-no-folder", ["oews", "--data", "{tmp}/nowhere"], "not a folder"),
    ("oews-no-files", ["oews", "--data", "{tmp}/empty_data"], "no OEWS national file for 2019"),
    ("oews-unknown-measure", ["oews", "--data", "{tmp}/data", "--measure", "vibes"], "unknown; known"),
    ("oews-years-reversed", ["oews", "--data", "{tmp}/data", "--from-year", "2023", "--to-year", "2019"],
     "must be before"),
    ("oews-corrupt-xlsx", ["oews", "--data", "{tmp}/data", "--out", "{tmp}/oews-out"], "national_M2019_dl.xlsx"),
    ("oews-missing-year", ["oews", "--data", "{tmp}/data", "--from-year", "2023", "--to-year", "2024",
                           "--out", "{tmp}/oews-out"], "no OEWS national file for 2024"),
    ("oews-missing-columns", ["oews", "--data", "{tmp}/data_columns", "--out", "{tmp}/oews-out"],
     "missing column(s) O_GROUP"),
]


@pytest.fixture(scope="module")
def bad_tmp(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("bad")
    _bad_files(tmp)
    return tmp


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors exit from inside parse_args
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err


def test_an_unknown_optimizer_gets_one_line_naming_the_allowed_values(capsys):
    code, err = _run([*CAL, "--optimizer", "newton"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "--optimizer" in err and "'newton' is not an optimiser; choose from lm, lm-box, lbfgs, adam" in err


def test_the_table_is_large_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("argv", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_clear_error(argv, fragment, bad_tmp, capsys, monkeypatch):
    monkeypatch.chdir(bad_tmp)  # default results folders (runs/...) would land here, never in the repo
    argv = [a.replace("{tmp}", str(bad_tmp)) for a in argv]
    code, err = _run(argv, capsys)
    assert code == 2, err
    assert err.startswith("levelfield") and "error:" in err and "Traceback" not in err
    assert fragment in err, err
    # Nothing half-made is left behind: no results folder and no partial sibling appeared.
    leftovers = {p.name for p in bad_tmp.iterdir()} - {"targets", "weights", "exists", "a_file", "data",
                                                       "empty_data", "data_columns", "changed_report.json", "not_a_report.json", "foreign_report.json",
                                                       "no_report"}
    assert not leftovers, leftovers


@pytest.mark.parametrize("argv", [
    ["simulate", "--set", "sigma=-1"],
    ["calibrate", "--targets", "{tmp}/targets/nan.csv"],
])
def test_a_real_process_exits_2_without_traceback(argv, bad_tmp):
    argv = [a.replace("{tmp}", str(bad_tmp)) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "estimation.cli", *argv], capture_output=True, text=True,
                          timeout=120, cwd=bad_tmp)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def _outside(domain) -> list[float]:
    """Values just outside a domain: below/at an open lower end, above/at an open upper end, the hole."""
    out = []
    if domain.lo is not None:
        out.append(domain.lo if domain.lo_open else domain.lo - 0.5)
    if domain.hi is not None:
        out.append(domain.hi if domain.hi_open else domain.hi + 0.5)
    if domain.exclude is not None:
        out.append(domain.exclude)
    return out


OUTSIDE = [(name, value) for name, domain in DOMAINS.items() for value in _outside(domain)]


#: The values just outside each domain, written by hand from the domain column of MODEL.md section 3
#: (independently of ``DOMAINS`` and ``_outside``): > 0 gives 0; >= 0 gives -0.5; [0, 1] gives -0.5
#: and 1.5; [0, 1) gives -0.5 and 1; (0, 1) gives 0 and 1; > -1 gives -1; != 0 gives 0. The
#: real-valued lam, c_bar and zeta have none.
MODEL_MD_OUTSIDE = {
    "sigma": [0.0], "A1": [-0.5], "alpha": [-0.5], "z_lo": [-0.5, 1.5], "z_hi": [-0.5, 1.5], "w_a": [0.0],
    "sigma_nu": [-0.5], "mu": [-0.5], "rho": [0.0], "omega": [-0.5, 1.5], "sigma_theta": [0.0], "gamma": [-1.0],
    "sigma_c": [-0.5], "tau": [0.0], "sigma_eps": [-0.5], "gini_K": [-0.5, 1.0], "r_K": [-0.5], "eta0": [-0.5],
    "eta1": [-0.5], "psi": [-0.5], "xi": [-0.5, 1.5], "owner_share": [0.0, 1.0], "rho_occ": [-0.5, 1.5],
    "b_occ": [0.0], "rho_firm": [-0.5, 1.5],
}
MODEL_MD_REAL = ["c_bar", "lam", "zeta"]


def test_every_bounded_parameter_is_covered():
    # Parameters without outside values are the real-valued ones (lam, c_bar, zeta): any finite
    # number is allowed, and non-finite ones are refused by --set itself (cases set-nan, set-inf).
    unbounded = sorted(n for n in DOMAINS if not _outside(DOMAINS[n]))
    assert unbounded == MODEL_MD_REAL
    assert set(MODEL_MD_OUTSIDE).isdisjoint(MODEL_MD_REAL) and set(MODEL_MD_OUTSIDE) | set(MODEL_MD_REAL) == set(DOMAINS)
    # The table the parametrised test below runs is exactly the hand-written one.
    got = {}
    for name, value in OUTSIDE:
        got.setdefault(name, []).append(value)
    assert {n: sorted(v) for n, v in got.items()} == {n: sorted(v) for n, v in MODEL_MD_OUTSIDE.items()}


@pytest.mark.parametrize(("name", "value"), OUTSIDE, ids=[f"{n}={v:g}" for n, v in OUTSIDE])
def test_every_parameter_outside_its_domain_is_refused(name, value, capsys):
    # The spec whose parameters these are, so that the value is checked where it is used.
    spec = "ces" if name in ("rho", "omega") else "partial_multiplicative" if name == "mu" else "additive"
    code, err = _run([*SIM, "--spec", spec, "--set", f"{name}={value!r}"], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"parameter {name}=" in err and "outside its domain" in err and str(DOMAINS[name]) in err, err


# ---------------------------------------------------------------------------------------------
# "Refused before any work": the model is never simulated for a bad command line

#: A representative set of bad command lines, one per kind of input (ids as in CASES).
BEFORE_WORK = [
    ("set-outside-domain", [*SIM, "--set", "sigma=-1"]),
    ("set-outside-domain-calibrate", [*CAL, "--set", "xi=2"]),
    ("set-not-a-number", [*CAL, "--set", "xi=high"]),
    ("free-unknown", [*CAL, "--free", "alpha,beta"]),
    ("bound-malformed", [*CAL, "--bound", "sigma"]),
    ("bound-outside-domain", [*CAL, "--bound", "xi=-1:0.5"]),
    ("targets-non-numeric", [*CAL, "--targets", "{tmp}/targets/text.csv"]),
    ("targets-broken-toml", [*CAL, "--targets", "{tmp}/targets/broken.toml"]),
    ("targets-fewer-moments-than-free", [*CAL, "--targets", "{tmp}/targets/missing.csv"]),
    ("moments-fewer-than-free", [*CAL, "--moments", "m1,m2,m3", "--free", "alpha,sigma,eta1,xi"]),
    ("weights-asymmetric", [*CAL, "--weights", "{tmp}/weights/asymmetric.csv"]),
    ("out-exists", [*CAL, "--out", "{tmp}/exists"]),
    ("optimizer-unknown", [*CAL, "--optimizer", "newton"]),
    ("regimes-out-exists", ["regimes", *SMALL, "--out", "{tmp}/exists"]),
    ("scenario-set-outside-domain", ["scenario", "all", *SMALL, "--set", "gini_K=1"]),
    ("panel-power-set-outside-domain", ["panel-power", *SMALL, "--set", "tau=0"]),
]


@pytest.fixture
def heavy_work(monkeypatch) -> list[str]:
    """Replace every entry into the model's computations by a function that records the call and
    raises AssertionError("heavy work reached"); returns the record.

    The names are patched on the modules where the estimation looks them up at call time:
    ``jaxmodel.make_draws``/``moments``/``solve``/``assign`` (the CLI, calibration, regimes, panel and
    optimiser modules all call ``jaxmodel.<name>``), ``optimiser.evaluate``/``evaluate_in_loop``/
    ``new_batch``/``run_batch`` and ``noise.simulation_noise`` (called as ``optimiser.<name>`` and
    ``noise.<name>`` by ``estimation.msm.calibrate``).
    """
    import jaxmodel
    from estimation.msm import noise, optimiser

    reached: list[str] = []

    def forbidden(name):
        def stub(*args, **kwargs):
            reached.append(name)
            raise AssertionError(f"heavy work reached: {name}")
        return stub

    for module, names in ((jaxmodel, ("make_draws", "moments", "solve", "assign")),
                          (optimiser, ("evaluate", "evaluate_in_loop", "new_batch", "run_batch")),
                          (noise, ("simulation_noise",))):
        for name in names:
            monkeypatch.setattr(module, name, forbidden(f"{module.__name__}.{name}"))
    return reached


@pytest.mark.parametrize("argv", [c[1] for c in BEFORE_WORK], ids=[c[0] for c in BEFORE_WORK])
def test_bad_input_is_refused_before_any_heavy_work(argv, bad_tmp, capsys, monkeypatch, heavy_work):
    monkeypatch.chdir(bad_tmp)
    code, err = _run([a.replace("{tmp}", str(bad_tmp)) for a in argv], capsys)  # AssertionError if reached
    assert code == 2 and "error:" in err, err
    assert heavy_work == []


@pytest.mark.parametrize("argv", [
    [*SIM, "--set", "xi=0.2"],
    [*CAL, "--out", "{out}"],
    ["scenario", "all", *SMALL],
    ["panel-power", *SMALL, "--out", "{out}"],
], ids=["simulate", "calibrate", "scenario", "panel-power"])
def test_the_guard_catches_heavy_work_on_good_input(argv, tmp_path, monkeypatch, heavy_work):
    """The control: with good input the same command lines do reach the patched functions, so the
    test above would fail if a bad one slipped through validation."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="heavy work reached"):
        main([a.replace("{out}", str(tmp_path / "out")) for a in argv])
    assert heavy_work and heavy_work[0] == "jaxmodel.make_draws"
