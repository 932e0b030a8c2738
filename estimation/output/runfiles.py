"""Results folders, atomic writes and checkpoints.

A results folder DIR is either absent or complete. While a run works, everything it writes lives in
a hidden sibling ``.DIR.partial`` (its configuration ``run.json`` and ``checkpoint.npz``, rewritten
atomically after every optimiser iteration). When the run ends, the results are written into
``.DIR.partial/results`` and that folder is renamed to DIR in one step. An interrupted run leaves
only the partial folder, which ``--resume`` continues; an existing DIR is replaced only with
``--force``.

Several processes (``estimation.distributed``): only process 0 writes. The atomic writes below
return at once on the others, except into their private staging folder (they build the same
results files, which some writers read back, in a temporary folder of their own and throw them
away). :class:`RunFolder` keeps the processes in step where they share the folder: every process
checks it before process 0 changes it (and all stop with the same error if one of them cannot use
it), every process reads a resumed run's checkpoint before process 0 writes the next one, and
process 0 publishes the results only once every process is done with the
partial folder. The folder must be on a filesystem every process sees.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from estimation import distributed
from estimation.errors import OutputError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace (on
    process 0 only when several processes run one program)."""
    path = Path(path)
    if not distributed.is_writer() and not _private(path):
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_csv(frame, path: Path, index: bool = False) -> None:
    """A pandas DataFrame as CSV, atomically, floats with 17 significant digits (read back exactly)."""
    atomic_write_text(path, frame.to_csv(index=index, float_format="%.17g"))


def atomic_write_json(path: Path, payload) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _non_finite_name(x: float) -> str:
    return "inf" if x > 0 else ("-inf" if x < 0 else "nan")


def _plain(obj, non_finite, path: str = ""):
    """A deep copy with NumPy types turned into Python ones; each non-finite float is replaced by
    ``non_finite(x, path)`` (``path`` like "a.b.0")."""
    if isinstance(obj, dict):
        return {str(k): _plain(v, non_finite, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_plain(v, non_finite, f"{path}.{i}" if path else str(i)) for i, v in enumerate(list(obj))]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return non_finite(obj, path)
    return obj


def to_jsonable(obj):
    """A deep copy with NumPy types turned into Python ones and inf/nan as strings (valid JSON)."""
    return _plain(obj, lambda x, path: _non_finite_name(x))


def with_nulls(obj) -> tuple[object, dict]:
    """A deep copy with every non-finite float replaced by None (JSON null, valid per RFC 8259), and
    {path: "nan" | "inf" | "-inf"} naming what each null stood for (paths like "a.b.0")."""
    flags: dict[str, str] = {}

    def null(x, path):
        flags[path] = _non_finite_name(x)
        return None

    return _plain(obj, null), flags


class RunFolder:
    """The results folder of one run and its hidden partial sibling."""

    def __init__(self, out: str | Path):
        self.out = Path(out).expanduser().absolute()
        self.partial = self.out.parent / f".{self.out.name}.partial"

    @property
    def checkpoint(self) -> Path:
        return self.partial / "checkpoint.npz"

    @property
    def config_file(self) -> Path:
        return self.partial / "run.json"

    def check(self, resume: bool = False, force: bool = False) -> None:
        """The checks of :meth:`prepare` that touch nothing: run them before reading big inputs.

        Raises:
            OutputError: DIR exists without --force, is a file, lies under a file, or --resume
                finds no interrupted run.
        """
        for parent in self.out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise OutputError(f"--out {self.out}: {parent} is a file, not a folder")
                break
        if self.out.exists() and not self.out.is_dir():
            raise OutputError(f"--out {self.out} exists and is not a folder")
        if resume and not self.partial.exists():
            raise OutputError(f"--resume: no interrupted run to continue ({self.partial} does not exist)")
        if self.out.exists() and not force and not (resume and self.partial.exists()):
            raise OutputError(f"results folder {self.out} already exists; pass --force to replace it")

    def prepare(self, config: dict, resume: bool, force: bool) -> bool:
        """Check the folders before any work; returns True when an interrupted run is resumed.

        With several processes every one checks, then process 0 alone creates or clears the
        partial folder; all raise the same error if any one fails.

        Raises:
            OutputError: DIR exists without --force; an interrupted run exists without --resume or
                --force; --resume with a different configuration; folders that cannot be written.
        """
        resumed, error = False, None
        try:
            self.check(resume, force)
            if self.partial.exists():
                if resume:
                    self._check_same_config(config)
                    resumed = True
                elif not force:
                    raise OutputError(
                        f"an interrupted run is waiting in {self.partial}; pass --resume to continue it "
                        "or --force to start over"
                    )
        except OutputError as exc:
            error = str(exc)
        _raise_if(distributed.agree("results folder checked", error))
        error = None
        if distributed.is_writer():
            try:
                if self.partial.exists() and not resumed:  # force
                    shutil.rmtree(self.partial)
                self.partial.mkdir(parents=True, exist_ok=True)
                probe = self.partial / ".write-test"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                error = f"cannot write in {self.partial.parent}: {exc.strerror}"
            else:
                if not resumed:
                    atomic_write_json(self.config_file, config)
        _raise_if(distributed.agree("results folder prepared", error))
        return resumed

    def _check_same_config(self, config: dict) -> None:
        try:
            saved = json.loads(self.config_file.read_text("utf-8"))
        except (OSError, ValueError):
            raise OutputError(
                f"cannot resume: {self.config_file} is missing or unreadable; pass --force to start over"
            ) from None
        current = json.loads(json.dumps(config, default=_json_default))
        differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differing:
            raise OutputError(
                "cannot resume: the interrupted run used different settings for "
                + ", ".join(differing) + "; repeat its options or pass --force to start over"
            )

    def save_checkpoint(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, __meta__=np.array(json.dumps(to_jsonable(meta))), **arrays)
        atomic_write_bytes(self.checkpoint, buffer.getvalue())

    def load_checkpoint(self) -> tuple[dict[str, np.ndarray], dict] | None:
        loaded, error = None, None
        if self.checkpoint.exists():
            try:
                with np.load(self.checkpoint, allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files if k != "__meta__"}
                    meta = json.loads(str(data["__meta__"]))
                loaded = arrays, meta
            except (OSError, ValueError, KeyError) as exc:
                error = f"checkpoint {self.checkpoint} is unreadable ({exc}); pass --force to start over"
        # Every process has read it before process 0 writes the next one (and all fail together).
        _raise_if(distributed.agree("checkpoint read", error))
        return loaded

    def discard(self) -> None:
        """Remove the partial folder of a run that failed for good (nothing to resume)."""
        if distributed.is_writer():
            shutil.rmtree(self.partial, ignore_errors=True)
        self._drop_private()

    @property
    def staging(self) -> Path:
        """Where the results are written before they are published: inside the partial folder, or
        on processes other than 0 a private temporary folder (they build the same files, which
        some writers read back, and throw them away)."""
        if distributed.is_writer():
            return self.partial / "results"
        if getattr(self, "_private_staging", None) is None:
            root = Path(tempfile.mkdtemp(prefix=f"levelfield-process{distributed.process_index()}-"))
            _PRIVATE.add(root)
            self._private_staging = root / "results"
        return self._private_staging

    def _drop_private(self) -> None:
        private = getattr(self, "_private_staging", None)
        if private is not None:
            _PRIVATE.discard(private.parent)
            shutil.rmtree(private.parent, ignore_errors=True)
            self._private_staging = None

    def publish(self) -> None:
        """Move the finished results into place in one rename and remove the partial folder (process
        0, once every process is done with the partial folder; all return once it is in place)."""
        distributed.barrier("results written")
        if distributed.is_writer():
            self._publish()
        self._drop_private()
        distributed.barrier("results published")

    def _publish(self) -> None:
        old = None
        if self.out.exists():
            old = self.out.parent / f".{self.out.name}.replaced-{os.getpid()}"
            os.rename(self.out, old)
        os.rename(self.staging, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.partial, ignore_errors=True)


def _raise_if(error: str | None) -> None:
    if error is not None:
        raise OutputError(error)


#: Private staging folders of this process (processes other than 0 write only there).
_PRIVATE: set[Path] = set()


def _private(path: Path) -> bool:
    return any(root == path or root in path.parents for root in _PRIVATE)
