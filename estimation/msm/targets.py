"""Estimation targets: the six moments' empirical values, standard errors and sources.

The shipped default (``data/targets_default.csv``) is the scenario of MODEL.md section 7. Users
pass their own as CSV (columns ``moment, value, se`` and optionally ``source``) or TOML (an array
of tables ``[[target]]`` with the same keys). Moments are named by their MODEL.md code names or
by m1..m6. A file may give any non-empty subset of the six: the moments it leaves out are not
targeted (their value and SE are NaN, their weight 0; they are still simulated and reported).
Every problem is reported before any computation, naming the row and the rule broken.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np

from estimation.errors import TargetsError
from jaxmodel import MOMENT_NAMES

ALIASES = {f"m{i + 1}": name for i, name in enumerate(MOMENT_NAMES)}
REQUIRED_COLUMNS = ("moment", "value", "se")
OPTIONAL_COLUMNS = ("source",)
_MAX_BYTES = 1_000_000


@dataclasses.dataclass(frozen=True)
class Targets:
    """Target values of the six moments in MODEL.md order.

    Attributes:
        values: (6,) empirical moments m_data (NaN for a moment the file does not give).
        se: (6,) their standard errors (> 0; NaN for a moment the file does not give).
        sources: six strings saying where each number comes from ("" where none).
        origin: the file they were read from ("default" for the shipped scenario).
        targeted: six booleans, the moments the estimation targets (weight 0 on the others): by
            default those the file gives; :meth:`restricted` narrows them (``--moments``).
    """

    values: np.ndarray
    se: np.ndarray
    sources: tuple[str, ...]
    origin: str
    targeted: tuple[bool, ...] = (True,) * len(MOMENT_NAMES)

    @property
    def names(self) -> tuple[str, ...]:
        return MOMENT_NAMES

    @property
    def mask(self) -> np.ndarray:
        """(6,) bool: True for a targeted moment."""
        return np.array(self.targeted, dtype=bool)

    @property
    def used(self) -> tuple[str, ...]:
        """The targeted moments' names, in MODEL.md order."""
        return tuple(n for n, t in zip(MOMENT_NAMES, self.targeted) if t)

    @property
    def given(self) -> tuple[str, ...]:
        """The moments the file gives a value for, in MODEL.md order."""
        return tuple(n for n, v in zip(MOMENT_NAMES, self.values) if np.isfinite(v))

    @property
    def fit_values(self) -> np.ndarray:
        """(6,) m_data as the estimation uses it: the targets' values, 0 for an untargeted moment
        (whose weight is 0, so that its value, if any, never enters the estimate)."""
        return np.where(self.mask, self.values, 0.0)

    @property
    def covariance(self) -> np.ndarray:
        """Omega = diag(se^2): (6, 6), with 0 for a moment the file does not give."""
        return np.diag(np.where(np.isfinite(self.se), self.se, 0.0) ** 2)

    def restricted(self, names) -> Targets:
        """A copy that targets only ``names`` (each must be given by the file; the caller checks)."""
        chosen = set(names)
        return dataclasses.replace(self, targeted=tuple(n in chosen for n in MOMENT_NAMES))

    def to_records(self) -> list[dict]:
        """One record per moment: moment, value, se (NaN where the file gives none), source, targeted."""
        return [
            {"moment": n, "value": float(v), "se": float(s), "source": src, "targeted": bool(t)}
            for n, v, s, src, t in zip(MOMENT_NAMES, self.values, self.se, self.sources, self.targeted)
        ]

    def shifted(self, moment: str, delta: float) -> Targets:
        """A copy with one target value moved by ``delta``."""
        values = self.values.copy()
        values[MOMENT_NAMES.index(moment)] += delta
        return dataclasses.replace(self, values=values, origin=f"{self.origin} ({moment} {delta:+g})")


def _number(text, where: str, column: str) -> float:
    if isinstance(text, bool):
        raise TargetsError(f"{where}: {column}={text!r} is not a number")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        raw = str(text).strip()
        if not raw:
            raise TargetsError(f"{where}: {column} is empty; a number is required")
        try:
            value = float(raw)
        except ValueError:
            raise TargetsError(f"{where}: {column}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise TargetsError(f"{where}: {column}={value} must be finite")
    return value


def _from_rows(rows: list[dict], origin: str) -> Targets:
    """Validate rows of {moment, value, se[, source]} and order them as MODEL.md; the moments the
    rows leave out are not targeted (value and SE NaN)."""
    if not rows:
        raise TargetsError(f"{origin}: no targets found; expected one row per moment ({', '.join(MOMENT_NAMES)})")
    found: dict[str, tuple[float, float, str]] = {}
    for i, row in enumerate(rows, start=1):
        where = f"{origin}, target {i}"
        raw_name = str(row.get("moment", "")).strip()
        name = ALIASES.get(raw_name.lower(), raw_name.lower())  # names are case-insensitive
        if name not in MOMENT_NAMES:
            raise TargetsError(
                f"{where}: unknown moment {raw_name!r}; allowed: {', '.join(MOMENT_NAMES)} (or m1..m6)"
            )
        if name in found:
            raise TargetsError(f"{where}: moment {name} appears twice; give each moment once")
        value = _number(row.get("value"), where, "value")
        se = _number(row.get("se"), where, "se")
        if se <= 0:
            raise TargetsError(f"{where}: se={se:g} for {name} must be > 0 (a standard error)")
        found[name] = (value, se, str(row.get("source") or "").strip())
    absent = (math.nan, math.nan, "")
    return Targets(
        values=np.array([found.get(n, absent)[0] for n in MOMENT_NAMES]),
        se=np.array([found.get(n, absent)[1] for n in MOMENT_NAMES]),
        sources=tuple(found.get(n, absent)[2] for n in MOMENT_NAMES),
        origin=origin,
        targeted=tuple(n in found for n in MOMENT_NAMES),
    )


def parse_csv(text: str, origin: str) -> Targets:
    """Targets from CSV text with a header row naming ``moment, value, se`` (``source`` optional)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))  # newline="": the csv module's own line ends
    try:
        fields = reader.fieldnames or []
    except csv.Error as exc:
        raise TargetsError(f"{origin}: the header row is not valid CSV ({exc})") from None
    header = [h.strip().lower() for h in fields if h is not None]
    if not header:
        raise TargetsError(f"{origin}: empty file; expected a header row 'moment,value,se,source'")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise TargetsError(
            f"{origin}: missing column(s) {', '.join(missing)}; the header must name "
            f"{', '.join(REQUIRED_COLUMNS)} (and optionally source), found {', '.join(header)}"
        )
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise TargetsError(
            f"{origin}: unknown column(s) {', '.join(unknown)}; allowed: {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"
        )
    rows = []
    try:
        for row in reader:
            if None in row:
                raise TargetsError(f"{origin}, line {reader.line_num}: more fields than the header has columns")
            clean = {(k or "").strip().lower(): (v if v is not None else "") for k, v in row.items()}
            if not any(str(v).strip() for v in clean.values()):
                continue  # blank line
            rows.append(clean)
    except csv.Error as exc:
        raise TargetsError(f"{origin}, line {reader.line_num}: not valid CSV ({exc})") from None
    return _from_rows(rows, origin)


def parse_toml(text: str, origin: str) -> Targets:
    """Targets from TOML text: ``[[target]]`` tables with moment, value, se (source optional)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetsError(f"{origin}: not valid TOML ({exc})") from None
    tables = data.get("target")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise TargetsError(
            f"{origin}: expected an array of tables [[target]] with keys moment, value, se (source optional)"
        )
    for i, table in enumerate(tables, start=1):
        unknown = [k for k in table if k not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if unknown:
            raise TargetsError(f"{origin}, target {i}: unknown key(s) {', '.join(unknown)}")
        absent = [k for k in REQUIRED_COLUMNS if k not in table]
        if absent:
            raise TargetsError(f"{origin}, target {i}: missing key(s) {', '.join(absent)}")
    return _from_rows(tables, origin)


def load_targets(path: str | Path | None = None) -> Targets:
    """Read and validate targets; ``None`` gives the shipped MODEL.md scenario.

    Raises:
        TargetsError: unreadable file, wrong encoding, unknown format or any invalid content.
    """
    if path is None:
        text = resources.files("estimation").joinpath("data/targets_default.csv").read_text("utf-8")
        return dataclasses.replace(parse_csv(text, "default targets"), origin="default")
    path = Path(path)
    if not path.is_file():
        raise TargetsError(f"targets file {path} does not exist (or is not a file)")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".toml"):
        raise TargetsError(f"targets file {path}: unknown format {suffix or '(none)'}; use .csv or .toml")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TargetsError(f"targets file {path} cannot be read: {exc.strerror}") from None
    if len(raw) > _MAX_BYTES:
        raise TargetsError(f"targets file {path} is {len(raw)} bytes; a targets file is a few lines (< 1 MB)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TargetsError(f"targets file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if "\x00" in text:
        raise TargetsError(f"targets file {path} contains NUL bytes; it is not a text file")
    parser = parse_csv if suffix == ".csv" else parse_toml
    return parser(text, str(path))
