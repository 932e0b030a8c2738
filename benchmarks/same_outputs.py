"""Do two revisions write the same results? A scripted byte-for-byte comparison (issue 13).

A refactor must not change what a user gets. This script runs one list of commands (every command of
the CLI, small sizes) in a scratch copy of a base revision and in the working tree (or a second
revision), and compares every file they write, and the standard output of the commands that print
JSON, byte for byte. ``timing.json`` holds wall times and is left out, as is the top-level
"seconds" of the commands' JSON files; ``report.html`` is compared up to whitespace (every run of
whitespace removed where it touches a tag, collapsed to one space elsewhere), since a page rendered
from a template may indent differently from the same page built from strings.

    python benchmarks/same_outputs.py --base HEAD~3                # base revision vs the working tree
    python benchmarks/same_outputs.py --base A --rev B --out benchmarks/results/same_outputs.json
    python benchmarks/same_outputs.py --base-dir /tmp/base --rev-dir /tmp/rev   # two source trees

Exit code 0 when everything is identical, 1 otherwise (the differing files are listed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
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
SMALL = ["--agents", "4000", "--firms", "40", "--seed", "3"]

#: (name, arguments with {out}/{cal}/{data} placeholders, whether stdout is compared)
COMMANDS = [
    ("simulate", ["simulate", *SMALL, "--json"], True),
    ("simulate-set", ["simulate", *SMALL, "--json", "--set", "xi=0.4", "--set", "psi=0.5"], True),
    ("calibrate", ["calibrate", *SMALL, "--starts", "2", "--max-iter", "15", "--sim-sets", "3",
                   "--flip-checks", "1", "--quiet", "--out", "{out}"], False),
    ("calibrate-two-step", ["calibrate", *SMALL, "--starts", "1", "--max-iter", "10", "--sim-sets", "4",
                            "--flip-checks", "0", "--weights", "optimal", "--free", "xi,eta1", "--quiet",
                            "--out", "{out}"], False),
    ("regimes", ["regimes", "--from", "{cal}", "--grid", "3", "--out", "{out}"], False),
    ("scenario", ["scenario", "all", "--from", "{cal}", "--json", "--csv", "{out}/scenario.csv"], True),
    ("oews", ["oews", "--data", "{data}", "--no-model", "--out", "{out}"], False),
    ("panel-power", ["panel-power", "--from", "{cal}", "--reps", "20", "--sizes", "10", "40", "--out", "{out}"], False),
]


def _copy(rev: str, dest: Path) -> None:
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


#: Keys of JSON files that hold wall times, left out of the comparison (as timing.json is).
WALL_TIME_KEYS = ("seconds",)


#: Pages compared up to whitespace.
WHITESPACE_INSENSITIVE = ("report.html",)


def without_whitespace(text: str) -> str:
    """``text`` with whitespace next to a tag removed and every other run of it one space, and the
    page's wall-time cell (the JSON's "seconds", left out there too) blanked."""
    text = re.sub(r"\s*(<[^>]*>)\s*", r"\1", text)
    text = re.sub(r"(wall time</t[hd]><td[^>]*>)[^<]*", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def _digest(path: Path) -> str:
    """SHA-256 of the file; of a JSON file, without its wall-time keys (top level); of report.html,
    up to whitespace (:func:`without_whitespace`)."""
    data = path.read_bytes()
    if path.name in WHITESPACE_INSENSITIVE:
        data = without_whitespace(data.decode("utf-8")).encode("utf-8")
    if path.suffix == ".json":
        payload = json.loads(data)
        if isinstance(payload, dict) and any(k in payload for k in WALL_TIME_KEYS):
            data = json.dumps({k: v for k, v in payload.items() if k not in WALL_TIME_KEYS}, indent=2).encode()
    return hashlib.sha256(data).hexdigest()


def run_all(code: Path, work: Path, data: Path) -> dict[str, str]:
    """Run every command with the code in ``code``; returns {relative file name: sha256}."""
    # One hash seed for both sides: the comparison is of the code, not of the order in which a
    # process iterates sets (tests/empirics/test_oews.py checks that the files do not depend on it).
    env = {**os.environ, "PYTHONPATH": str(code), "LEVELFIELD_CACHE_DIR": str(work / "cache"), "PYTHONHASHSEED": "0"}
    digests: dict[str, str] = {}
    for name, args, stdout in COMMANDS:
        out = work / name
        if name == "scenario":
            out.mkdir(parents=True)
        filled = [a.format(out=out, cal=work / "calibrate", data=data) for a in args]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "estimation.cli", *filled], cwd=work, env=env,
                              capture_output=True, text=True, timeout=1800)
        print(f"  {name}: exit {proc.returncode} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed in {code}:\n{proc.stderr[-3000:]}")
        if stdout:
            digests[f"{name}/stdout"] = hashlib.sha256(proc.stdout.encode()).hexdigest()
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            if path.name != "timing.json":
                digests[str(path.relative_to(work))] = _digest(path)
    return digests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="the revision to compare against")
    parser.add_argument("--rev", help="a second revision (default: the working tree)")
    parser.add_argument("--base-dir", type=Path, help="a source tree to compare against, instead of --base")
    parser.add_argument("--rev-dir", type=Path, help="a second source tree, instead of --rev")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the OEWS data folder")
    parser.add_argument("--out", type=Path, default=RESULTS / "same_outputs.json")
    parser.add_argument("--keep", type=Path, help="copy each side's files to KEEP/base and KEEP/new (to read a difference)")
    args = parser.parse_args()
    if (args.base is None) == (args.base_dir is None):
        parser.error("give one of --base and --base-dir")
    if args.rev is not None and args.rev_dir is not None:
        parser.error("give at most one of --rev and --rev-dir")
    base_label = args.base or str(args.base_dir)
    new_label = args.rev or (str(args.rev_dir) if args.rev_dir else "working tree")
    with tempfile.TemporaryDirectory() as tmp:
        sides = {}
        for label, rev, tree in (("base", args.base, args.base_dir), ("new", args.rev, args.rev_dir)):
            code = Path(tmp) / f"{label}-code"
            if tree is not None:
                code = tree.resolve()
            elif rev is None:
                shutil.copytree(ROOT, code, ignore=shutil.ignore_patterns(
                    ".git", "__pycache__", "*.egg-info", "runs", ".pytest_cache", ".hypothesis"))
            else:
                _copy(rev, code)
            # Both sides run in the same folder (emptied in between): paths written into the
            # results (--from origins, the files read) are then the same.
            work = Path(tmp) / "work"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            print(f"{label} ({base_label if label == 'base' else new_label}):", file=sys.stderr)
            sides[label] = run_all(code, work, args.data.resolve())
            if args.keep is not None:
                shutil.copytree(work, args.keep / label, ignore=shutil.ignore_patterns("cache"), dirs_exist_ok=True)
    names = sorted(set(sides["base"]) | set(sides["new"]))
    differ = [n for n in names if sides["base"].get(n) != sides["new"].get(n)]
    payload = {"base": base_label, "new": new_label, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "commands": [" ".join(a) for _, a, _ in COMMANDS], "files_compared": len(names),
               "compared_up_to_whitespace": list(WHITESPACE_INSENSITIVE),
               "identical": not differ, "differ": differ}
    write_json(args.out, payload)
    print(f"{len(names)} files compared; {'all identical' if not differ else f'{len(differ)} differ: {differ}'}",
          file=sys.stderr)
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
