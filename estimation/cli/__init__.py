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

from estimation.cli import calibrate, identify, oews, panel_power, regimes, report, scenario, simulate
from estimation.cli.options import Parser, add_distributed_options, parse_assignments
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
            "model size starts faster with the same results. XLA:CPU's library fusions are switched off "
            "for speed (jaxmodel.compilation; LEVELFIELD_XLA_OPTIONS=off keeps XLA's defaults). "
            "Bad input exits with code 2."
        ),
    )
    try:
        from importlib.metadata import version

        parser.add_argument("--version", action="version", version=f"levelfield {version('levelfield')}")
    except Exception:  # pragma: no cover - not installed (run from a source tree)
        pass
    add_distributed_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for command in (simulate, calibrate, identify, regimes, scenario, oews, panel_power, report):
        command.register(commands)
    return parser


def compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache for the command line; returns its folder.

    Compiling the estimation's programs takes most of a first calibration (the times are in the
    README, "Command line"); with the cache, later runs of the same model size load them instead.
    The folder is ``$LEVELFIELD_CACHE_DIR``, else ``$JAX_COMPILATION_CACHE_DIR``, else
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
    from estimation import distributed
    from jaxmodel import ModelError

    try:  # several processes: checked before any work, joined before any JAX computation
        launch = distributed.resolve(args.coordinator, args.num_processes, args.process_id, args.heartbeat_timeout)
    except EstimationError as exc:
        print(f"levelfield: error: {exc}", file=sys.stderr)
        return 2
    compilation_cache()
    if launch is not None:
        try:
            distributed.initialize(launch)
        except distributed.DistributedError as exc:
            print(f"levelfield {args.command}: error: {exc}", file=sys.stderr)
            return 1
        distributed.quiet_others()  # process 0 prints and writes; the others compute

    try:
        return args.run(args)
    except (ModelError, EstimationError) as exc:
        distributed.report_error(f"levelfield {args.command}: error: {exc}")
        return 2
    except distributed.DistributedError as exc:
        distributed.report_error(f"levelfield {args.command}: error: {exc}"
                                 + ("; rerun every process with --resume to continue" if args.command == "calibrate"
                                    else ""))
        return 1
    except KeyboardInterrupt:
        distributed.report_error(f"levelfield {args.command}: interrupted")
        return 130
    except Exception as exc:
        import jax

        from estimation import memory

        if memory.out_of_memory(exc):  # what the size check did not foresee: one line, nothing half-written
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            distributed.report_error(f"levelfield {args.command}: error: out of memory ({first[:300]}); try fewer "
                                     "--agents, --precision float32, or more devices or processes")
            return 2
        if distributed.process_count() == 1 or not isinstance(exc, jax.errors.JaxRuntimeError):
            raise
        # A collective with a process that died, or a runtime failure on one process.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        distributed.report_error(f"levelfield {args.command}: error: process {distributed.process_index()} of "
                                 f"{distributed.process_count()} stopped: {first}"
                                 + ("; rerun every process with --resume to continue" if args.command == "calibrate"
                                    else ""))
        return 1
