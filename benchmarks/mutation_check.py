"""Does the test suite catch a slightly wrong answer? A short mutation check (issue 12).

Each mutation is a small, meaningful change to one line of the code (a sign, a dropped weight, a
setting ignored). For each, the script copies a revision of the repository to a scratch folder,
applies the mutation, runs the test files that should catch it (in-process tests only: the copy is
imported from its own folder), and records whether they failed ("caught") or passed ("survived").

    python benchmarks/mutation_check.py                       # the working tree
    python benchmarks/mutation_check.py --rev 6bbc24b --out benchmarks/results/mutations_before.json

A mutation whose code is not in the revision is reported as "not applicable".
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: (name, file, [(old, new), ...] alternatives by revision, test files that should catch it)
MUTATIONS = [
    ("screening ridge set to 0", "jaxmodel/screening.py",
     [("_RIDGE = 1e-12", "_RIDGE = 0.0")],
     ["tests/model/test_credential_support.py", "tests/model/test_reference_equations.py", "tests/model/test_model.py"]),
    ("credential support ignored (every occupation in R)", "jaxmodel/screening.py",
     [("    return jnp.clip(jnp.minimum(n0, n1) / CREDENTIAL_MIN_COUNT - 1.0, 0.0, 1.0)",
       "    return jnp.ones_like(n0)")],
     ["tests/model/test_credential_support.py", "tests/model/test_reference_equations.py"]),
    ("fp_damping ignored (hard-coded 0.5)", "jaxmodel/education.py",
     [("    d, tol = settings.fp_damping, settings.tol", "    d, tol = 0.5, settings.tol"),
      ("tol, damping, max_iter = settings.tol, settings.fp_damping, settings.fp_max_iter",
       "tol, damping, max_iter = settings.tol, 0.5, settings.fp_max_iter")],
     ["tests/model/test_fixed_point.py", "tests/model/test_params.py"]),
    ("sign of the Delta Gini decomposition flipped", "estimation/msm/sensitivity.py",
     [("    by_target = grad @ (-sensitivity)  # (6,)", "    by_target = grad @ sensitivity  # (6,)")],
     ["tests/output/test_results_files.py", "tests/msm/test_calibration.py"]),
    ("sign inside the Gini flipped", "jaxmodel/inequality.py",
     [("(2.0 * cum - ws - total)", "(2.0 * cum + ws - total)")],
     ["tests/model/test_inequality.py", "tests/model/test_reference_equations.py"]),
    ("college premium from the wrong branch", "jaxmodel/outcomes.py",
     [("college_premium=jnp.sum(w[1] * log_income[1]) / jnp.sum(w[1])",
       "college_premium=jnp.sum(w[1] * log_income[0]) / jnp.sum(w[1])")],
     ["tests/model/test_reference_equations.py", "tests/model/test_model.py"]),
    ("m1 without exposure weights", "jaxmodel/outcomes.py",
     [("cv_change=_exposure_weighted_change(exposure, after.task_cv, before.task_cv)",
       "cv_change=_exposure_weighted_change(jnp.ones_like(exposure), after.task_cv, before.task_cv)")],
     ["tests/model/test_reference_equations.py", "tests/model/test_model.py"]),
    ("m1 from the CV over all workers, not within firms", "jaxmodel/outcomes.py",
     [("    task_cv = within_firm_cv(econ, w, task_mean)\n", "    task_cv = task_cv_all\n")],
     ["tests/model/test_within_firm_cv.py", "tests/model/test_reference_equations.py"]),
]


def _copy(rev: str | None, dest: Path) -> None:
    if rev is None:
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "runs",
                                                                    ".pytest_cache", ".hypothesis"))
    else:
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def run(rev: str | None, timeout: int) -> list[dict]:
    rows = []
    for name, file, alternatives, tests in MUTATIONS:
        with tempfile.TemporaryDirectory() as tmp:
            # The copy sits in tmp/main beside tmp/shared, as the repository sits beside ../shared.
            work = Path(tmp) / "main"
            _copy(rev, work)
            shared = ROOT.parent / "shared"
            if shared.is_dir():
                (Path(tmp) / "shared").symlink_to(shared)
            path = work / file
            text = path.read_text()
            applied = next(((old, new) for old, new in alternatives if old in text), None)
            # A test file is found by its name anywhere under tests/ (older revisions kept them flat).
            present = [str(found[0].relative_to(work)) for t in tests
                       if (found := sorted((work / "tests").rglob(Path(t).name)))]
            if applied is None or not present:
                rows.append({"mutation": name, "file": file, "result": "not applicable", "tests": present})
                print(f"{name}: not applicable", file=sys.stderr)
                continue
            path.write_text(text.replace(applied[0], applied[1], 1))
            env = {**os.environ, "PYTHONPATH": str(work), "LEVELFIELD_CACHE_DIR": str(Path(tmp) / "cache")}
            start = time.perf_counter()
            try:
                proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *present],
                                      cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
                caught = proc.returncode != 0
                tail = proc.stdout.strip().splitlines()[-1:] if proc.stdout else []
            except subprocess.TimeoutExpired:
                caught, tail = False, ["timeout"]
            rows.append({"mutation": name, "file": file, "result": "caught" if caught else "survived",
                         "tests": present, "seconds": round(time.perf_counter() - start, 1), "pytest": tail})
            print(f"{name}: {rows[-1]['result']} ({rows[-1]['seconds']} s) {tail}", file=sys.stderr)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", help="a git revision to check instead of the working tree")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutation")
    parser.add_argument("--out", type=Path, default=RESULTS / "mutations.json")
    args = parser.parse_args()
    rows = run(args.rev, args.timeout)
    payload = {"revision": args.rev or "working tree", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "caught": sum(r["result"] == "caught" for r in rows),
               "applicable": sum(r["result"] != "not applicable" for r in rows), "mutations": rows}
    write_json(args.out, payload)
    print(f"caught {payload['caught']} of {payload['applicable']}; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
