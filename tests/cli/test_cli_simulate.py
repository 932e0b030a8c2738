"""The ``levelfield simulate`` command: tables, JSON, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import pytest

import jaxmodel
from estimation.cli import main

ARGS = ["simulate", "--agents", "20000", "--firms", "100", "--seed", "1"]


def test_json_has_the_model_md_names_and_equals_the_api(capsys, baseline, small_draws):
    assert main([*ARGS, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = jaxmodel.moments(baseline, small_draws, jaxmodel.Settings(n_agents=20_000, n_firms=100))
    for name in jaxmodel.MOMENT_NAMES:
        assert out[name] == float(getattr(expected, name))
    assert out["regime"] == expected.regime
    assert out["settings"]["n_agents"] == 20_000 and out["seed"] == 1
    assert {"gini_before", "college_share_after", "fp_residual_before", "fp_iterations_after"} <= set(out)


def test_set_changes_parameters(capsys):
    assert main([*ARGS, "--json", "--set", "eta0=1", "--set", "eta1=0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"]["eta0"] == 1.0 and out["params"]["eta1"] == 0.0


def test_table_output(capsys):
    assert main(ARGS) == 0
    text = capsys.readouterr().out
    for name in jaxmodel.MOMENT_NAMES:
        assert name in text
    assert "Regime:" in text and "Diagnostics" in text


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--set", "kappa=1"], "unknown parameter"),
        (["--set", "xi=1.5"], "xi=1.5 is outside its domain [0, 1]"),
        (["--set", "xi"], "NAME=VALUE"),
        (["--set", "xi=abc"], "must be a number"),
        (["--set", "xi=nan"], "finite"),
        (["--set", "xi=0.1", "--set", "xi=0.2"], "given twice"),
        (["--agents", "1001"], "multiple of n_firms"),
        (["--agents", "-5"], "must be >= 1"),
        (["--agents", "lots"], "not a whole number"),
        (["--spec", "linear"], "invalid choice"),
        (["--seed", "-1"], "[0, 2^32)"),
        (["--precision", "float16"], "invalid choice"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(extra, fragment):
    proc = subprocess.run(
        [sys.executable, "-m", "estimation.cli", *ARGS, *extra], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_help_explains_itself():
    proc = subprocess.run([sys.executable, "-m", "estimation.cli", "simulate", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for option in ("--set", "--agents", "--firms", "--spec", "--seed", "--json"):
        assert option in proc.stdout


def test_json_writes_null_with_a_flag_where_a_value_is_not_finite(capsys):
    """Where the model overflows inside its domain (sigma = 0.001, see tests/msm/test_numerical_faults.py)
    some moments are not finite: --json writes them as null (strict RFC 8259 JSON: the parser
    refuses NaN and Infinity here) and names each in "non_finite" with what it was."""
    assert main([*ARGS, "--json", "--set", "sigma=0.001"]) == 0
    text = capsys.readouterr().out

    def refuse(constant):
        raise ValueError(f"not RFC 8259 JSON: {constant}")

    out = json.loads(text, parse_constant=refuse)
    nulls = {k for k, v in out.items() if v is None}
    assert nulls and set(out["non_finite"]) == nulls
    assert set(out["non_finite"].values()) <= {"nan", "inf", "-inf"}
    assert any(name in nulls for name in jaxmodel.MOMENT_NAMES)
