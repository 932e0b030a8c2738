"""The ``levelfield`` command line: one module per command, shared option groups in ``options``.

Every subcommand validates its options before any heavy work; bad input prints one line,
``levelfield <command>: error: <what is wrong and what is allowed>``, and exits with code 2. A
command handler turns its arguments into one call and its results into files and tables
(``estimation.output``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from estimation.cli import calibrate, oews, panel_power, regimes, simulate
from estimation.cli.options import Parser, parse_assignments
from estimation.errors import EstimationError

__all__ = ["build_parser", "compilation_cache", "main", "parse_assignments"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="levelfield",
        description=(
            "levelfield: the model of 'When AI Levels the Playing Field' (Chen & Meng, 2026) in JAX. "
            "AI compresses skill differences within tasks yet can widen inequality by moving value to "
            "concentrated complementary assets; these commands simulate, estimate and question it."
        ),
        epilog=(
            "Compiled programs are kept in a persistent cache (~/.cache/levelfield/xla, or "
            "$LEVELFIELD_CACHE_DIR; LEVELFIELD_CACHE_DIR=off turns it off), so a second run of the same "
            "model size starts faster with the same results. Bad input exits with code 2."
        ),
    )
    try:
        from importlib.metadata import version

        parser.add_argument("--version", action="version", version=f"levelfield {version('levelfield')}")
    except Exception:  # pragma: no cover - not installed (run from a source tree)
        pass
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for command in (simulate, calibrate, regimes, oews, panel_power):
        command.register(commands)
    return parser


def compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache for the command line; returns its folder.

    Compiling the estimation's programs takes most of a small calibration (about 45 of 55 s at
    N = 2_000); with the cache, later runs of the same model size load them instead. The folder is
    ``$LEVELFIELD_CACHE_DIR``, else ``$JAX_COMPILATION_CACHE_DIR``, else
    ``~/.cache/levelfield/xla`` (``$XDG_CACHE_HOME`` respected); ``LEVELFIELD_CACHE_DIR=off`` turns
    it off. A cached program is the same executable, so results are identical with or without it.
    """
    import os

    choice = os.environ.get("LEVELFIELD_CACHE_DIR", "").strip()
    if choice.lower() in ("off", "0", "none", "false"):
        return None
    folder = choice or os.environ.get("JAX_COMPILATION_CACHE_DIR", "").strip()
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
        folder = str(Path(base) / "levelfield" / "xla")
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a cache that cannot be written is no reason to fail a run
    import jax

    from estimation.msm import programs

    jax.config.update("jax_compilation_cache_dir", folder)
    # Every program, however quick to compile: a new process then compiles nothing it has seen.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    programs.set_folder(folder)  # and the estimator's lowered programs (no tracing either)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``levelfield`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from jaxmodel import ModelError

    compilation_cache()

    try:
        return args.run(args)
    except (ModelError, EstimationError) as exc:
        print(f"levelfield {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"levelfield {args.command}: interrupted", file=sys.stderr)
        return 130

