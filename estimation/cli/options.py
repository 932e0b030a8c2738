"""Option groups and parsers shared by the commands (each parses and checks, no heavy work)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from estimation.errors import ConfigError


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of usage plus error."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_assignments(items: Sequence[str]) -> dict[str, float]:
    """``["alpha=0.5", "xi=0.2"]`` -> ``{"alpha": 0.5, "xi": 0.2}``, names checked against the model.

    Raises:
        ConfigError: malformed item, unknown name, repeated name, or a value that is not a number.
    """
    from jaxmodel import PARAM_NAMES

    out: dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name or not text.strip():
            raise ConfigError(f"--set {item!r} must look like NAME=VALUE, e.g. --set xi=0.2")
        if name not in PARAM_NAMES:
            raise ConfigError(f"--set {name}: unknown parameter; known: {', '.join(PARAM_NAMES)}")
        if name in out:
            raise ConfigError(f"--set {name} is given twice")
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"--set {name}={text!r}: the value must be a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"--set {name}={text}: the value must be finite")
        out[name] = value
    return out



def positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def optimizer_name(text: str) -> str:
    """--optimizer NAME: one of ``estimation.msm.optimiser.OPTIMISERS`` (checked before any work)."""
    from estimation.msm.optimiser import OPTIMISERS

    if text not in OPTIMISERS:
        raise argparse.ArgumentTypeError(f"{text!r} is not an optimiser; choose from {', '.join(OPTIMISERS)}")
    return text


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value} must be in [0, 2^32)")
    return value


def add_model_options(parser: argparse.ArgumentParser, agents: int = 100_000, firms: int = 500) -> None:
    """Options shared by every command that simulates the model."""
    from jaxmodel import PRECISIONS, SPECS

    group = parser.add_argument_group("model")
    group.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE",
        help="change one parameter of the baseline (repeatable), e.g. --set xi=0.3 --set eta1=1",
    )
    group.add_argument("--agents", type=positive_int, default=agents, metavar="N",
                       help=f"simulated workers N, a multiple of --firms and --occupations (default {agents:_})")
    group.add_argument("--firms", type=positive_int, default=firms, metavar="F",
                       help=f"firms F of equal size N/F (default {firms})")
    group.add_argument("--occupations", type=positive_int, default=10, metavar="O",
                       help="occupations O of equal size N/O (default 10)")
    group.add_argument("--tasks", type=positive_int, default=40, metavar="T", help="task grid size T (default 40)")
    group.add_argument("--spec", choices=SPECS, default="additive",
                       help="AI augmentation form S(h) (default additive)")
    group.add_argument("--precision", choices=PRECISIONS, default="float64",
                       help="floating-point precision (default float64; float32 for GPU throughput)")
    group.add_argument("--seed", type=seed, default=0, metavar="K", help="PRNG seed of the draws (default 0)")


def model_inputs(args: argparse.Namespace):
    """(params, settings) from the parsed model options, validated before any computation."""
    from jaxmodel import Settings, baseline

    settings = Settings(
        n_agents=args.agents,
        n_firms=args.firms,
        n_tasks=args.tasks,
        n_occupations=args.occupations,
        spec=args.spec,
        precision=args.precision,
    )
    params = baseline().replace(**parse_assignments(args.assignments))
    return params, settings



def add_results_options(parser: argparse.ArgumentParser, command: str) -> None:
    """--out DIR and --force: a new results folder, never replacing one without being asked."""
    parser.add_argument("--out", type=Path, metavar="DIR", help=f"results folder (default runs/{command}-<date>-<time>)")
    parser.add_argument("--force", action="store_true", help="replace an existing results folder")


def add_from_option(parser: argparse.ArgumentParser, help: str = "a calibration's results folder") -> None:
    """--from DIR: the parameters, settings and seed of a calibration's results folder."""
    parser.add_argument("--from", dest="from_dir", type=Path, metavar="DIR", help=help)


def default_out(args: argparse.Namespace, command: str) -> Path:
    """--out, or runs/<command>-<date>-<time>."""
    import time

    return args.out or Path("runs") / time.strftime(f"{command}-%Y%m%d-%H%M%S")


def base_and_settings(args: argparse.Namespace):
    """(params, settings, seed, origin) from --from DIR or from the model options."""
    if getattr(args, "from_dir", None) is not None:
        from estimation.msm.config import model_settings
        from estimation.msm.result import estimated_params

        params, config = estimated_params(args.from_dir)
        if args.assignments:
            params = params.replace(**parse_assignments(args.assignments))
        return params, model_settings(config), int(config["seed"]), f"calibration in {args.from_dir}"
    params, settings = model_inputs(args)
    return params, settings, args.seed, "baseline" + (" with --set changes" if args.assignments else "")


def add_distributed_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``levelfield`` itself (before the command): one run over several processes.

    Checked by ``estimation.distributed.resolve`` together with their environment variables, so the
    messages are the same either way.
    """
    group = parser.add_argument_group(
        "several processes (JAX's multi-controller runtime; found by itself under Slurm srun and Open MPI mpirun)")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="address of process 0, where the coordination service listens "
                            "(default $LEVELFIELD_COORDINATOR)")
    group.add_argument("--num-processes", metavar="P",
                       help="number of processes of the run (default $LEVELFIELD_NUM_PROCESSES)")
    group.add_argument("--process-id", metavar="I",
                       help="this process's index in 0..P-1; process 0 writes the results "
                            "(default $LEVELFIELD_PROCESS_ID)")
    group.add_argument("--heartbeat-timeout", metavar="SECONDS",
                       help="a process silent this long is declared dead and the others stop with an error "
                            "(default $LEVELFIELD_HEARTBEAT_TIMEOUT or 60)")
