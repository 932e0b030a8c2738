"""Peak memory of whole commands against N: the per-agent figures of ``estimation.memory`` (issue 20).

Each run is a new process (``levelfield simulate --json``, ``levelfield calibrate`` or ``levelfield
identify``, with the size check off; the calibration stops after three iterations and the
identification takes few points, since neither the iterations nor the points, which run one at a
time on the CPU, change the peak), and its peak resident set is read from the operating system (``ru_maxrss`` of a
one-child wrapper), with no compilation cache, so that it includes compiling (a first run). The slope of peak RSS in N between the sizes is the bytes per agent; the
intercept is the fixed part. Also the estimate ``estimation.memory.needed_bytes`` beside each
measurement, and their ratio. Writes benchmarks/results/memory.json.

    python benchmarks/bench_memory.py                              # simulate, float64 and float32
    python benchmarks/bench_memory.py --command calibrate --sizes 100000,300000,600000
    python benchmarks/bench_memory.py --command identify --sizes 100000,300000,600000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, environment, write_json  # noqa: E402

_WRAPPER = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 if p.returncode == 0 else -1)")


def command_line(command: str, n: int, precision: str, out: Path) -> list[str]:
    firms = max(n // 1000, 1) if command == "simulate" else max(n // 200, 1)
    size = ["--agents", str(n), "--firms", str(firms), "--precision", precision]
    if command == "simulate":
        return ["levelfield", "simulate", "--json", *size]
    if command == "identify":
        return ["levelfield", "identify", *size, "--points", "4", "--slice-points", "3", "--grid", "3",
                "--quiet", "--force", "--out", str(out)]
    return ["levelfield", "calibrate", *size, "--starts", "3", "--max-iter", "3", "--sim-sets", "4",
            "--flip-checks", "1", "--quiet", "--force", "--out", str(out)]


def peak_rss(argv: list[str]) -> int:
    """Peak resident bytes of one run of ``argv`` in a new process (size check off)."""
    # No compilation cache: a first run's peak includes compiling its programs (what the estimate covers).
    env = {**os.environ, "LEVELFIELD_MEMORY_CHECK": "off", "LEVELFIELD_CACHE_DIR": "off"}
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], env=env, capture_output=True, text=True, check=True)
    value = int(out.stdout.strip().splitlines()[-1])
    if value < 0:
        raise RuntimeError(f"{' '.join(argv)} failed")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--command", choices=("simulate", "calibrate", "identify"), default="simulate")
    parser.add_argument("--sizes", default="200000,1000000,2000000,4000000")
    parser.add_argument("--precisions", default="float64,float32")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--reestimate", action="store_true",
                        help="measure nothing: recompute the estimate columns and fits of the existing results "
                             "file with the figures now in estimation.memory (after they were set from it)")
    args = parser.parse_args()
    from estimation import memory

    sizes = [int(s) for s in args.sizes.split(",")]
    path = args.out or RESULTS / f"memory_{args.command}.json"
    if args.reestimate:
        saved = json.loads(path.read_text("utf-8"))
        for row in saved["runs"]:
            row["estimate_bytes"] = memory.needed_bytes(row["command"], row["n_agents"], row["precision"])
            row["estimate_over_peak"] = row["estimate_bytes"] / row["peak_rss_bytes"]
        for precision, fit in saved["fits"].items():
            fit["in_code"] = memory.BYTES_PER_AGENT.get((args.command, precision))
        saved["fixed_bytes_in_code"] = memory.FIXED_BYTES[args.command]
        write_json(path, saved)
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precisions.split(","):
            for n in sizes:
                peak = peak_rss(command_line(args.command, n, precision, Path(tmp) / "run"))
                known = (args.command, precision) in memory.BYTES_PER_AGENT
                estimate = memory.needed_bytes(args.command, n, precision) if known else None
                rows.append({"command": args.command, "precision": precision, "n_agents": n, "peak_rss_bytes": peak,
                             "estimate_bytes": estimate, "estimate_over_peak": estimate / peak if known else None})
                print(json.dumps(rows[-1]), file=sys.stderr)
    fits = {}
    for precision in args.precisions.split(","):
        pts = [(r["n_agents"], r["peak_rss_bytes"]) for r in rows if r["precision"] == precision]
        (n0, p0), (n1, p1) = pts[0], pts[-1]
        slope = (p1 - p0) / (n1 - n0)
        fits[precision] = {"bytes_per_agent": slope, "fixed_bytes": p0 - slope * n0,
                           "in_code": memory.BYTES_PER_AGENT.get((args.command, precision))}
    write_json(path, {"command": args.command, "runs": rows, "fits": fits, "environment": environment(),
                      "fixed_bytes_in_code": memory.FIXED_BYTES.get(args.command)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
