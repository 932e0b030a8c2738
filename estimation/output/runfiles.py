"""How a results folder is written: absent or complete, never half-written, by one run at a time.

A results folder DIR is either absent or complete. While a run works, everything it writes lives in
a hidden sibling ``.DIR.partial`` (its configuration ``run.json`` and ``checkpoint.npz``, rewritten
atomically after every optimiser iteration). When the run ends, the results are written into
``.DIR.partial/results`` and that folder is renamed to DIR in one step. An interrupted run leaves
only the partial folder, which ``--resume`` continues; an existing DIR is replaced only with
``--force``.

A run holds an exclusive lock (``fcntl.flock``) on the file ``lock`` in its partial folder, which
names its pid and host. It is let go when the results are published or discarded, when nothing
refers to the run's :class:`RunFolder` any more (a run that raised, once its error is handled), and
by the kernel when the process ends, however it ends. A second run on the same folder, or a
``--resume`` while the first is alive, is refused with that pid; after the first has died (even by
SIGKILL), ``--resume`` continues its run. The lock file is not a results file: the results are
written into ``.DIR.partial/results``, which becomes DIR.

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
import errno
import fcntl
import io
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np

from estimation import distributed
from estimation.errors import OutputError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace (on
    process 0 only when several processes run one program).

    The file gets the mode ``open()`` would give it (0666 less the umask, so 0644 under the usual
    umask 022: readable by the group on a shared filesystem), not ``mkstemp``'s private 0600."""
    path = Path(path)
    if not distributed.is_writer() and not _private(path):
        return
    fd, tmp = _create_temporary(path)
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


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new empty file ``.NAME.XXXXXXXX.tmp`` beside ``path``, opened for writing, created as
    ``open()`` creates files (mode 0666, less the umask the kernel applies)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:  # pragma: no cover - one chance in 2^32
            continue


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


#: The lock file of a partial folder (never part of the results, which live in its results/).
LOCK_NAME = "lock"


class RunFolder:
    """The results folder of one run and its hidden partial sibling."""

    def __init__(self, out: str | Path):
        self.out = Path(out).expanduser().absolute()
        self.partial = self.out.parent / f".{self.out.name}.partial"
        self._lock: _Lock | None = None
        self._created = False  # this run made the partial folder (removed again if it fails to start)

    @property
    def checkpoint(self) -> Path:
        return self.partial / "checkpoint.npz"

    @property
    def config_file(self) -> Path:
        return self.partial / "run.json"

    def check(self, resume: bool = False, force: bool = False) -> None:
        """The checks of :meth:`prepare` that touch nothing: run them before reading big inputs.

        Raises:
            OutputError: DIR exists without --force, is a file, lies under a file, another process
                is writing it, or --resume finds no interrupted run.
        """
        for parent in self.out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise OutputError(f"--out {self.out}: {parent} is a file, not a folder")
                break
        if self.out.exists() and not self.out.is_dir():
            raise OutputError(f"--out {self.out} exists and is not a folder")
        if distributed.is_writer():  # the other processes of this run leave the lock to process 0
            owner = _owner(self.partial / LOCK_NAME)
            if owner is not None:
                raise OutputError(self._busy(owner))
        if resume and not self.partial.exists():
            raise OutputError(f"--resume: no interrupted run to continue ({self.partial} does not exist)")
        if self.out.exists() and not force and not (resume and self.partial.exists()):
            raise OutputError(f"results folder {self.out} already exists; pass --force to replace it")

    def prepare(self, config: dict, resume: bool, force: bool) -> bool:
        """Check the folders before any work; returns True when an interrupted run is resumed.

        With several processes every one checks, then process 0 alone creates or clears the
        partial folder; all raise the same error if any one fails.

        Process 0 takes the partial folder's lock first (creating the folder unless it resumes)
        and checks again under it, so that of two runs started at once on one folder only one goes
        on (the module's docstring says when the lock is let go).

        Raises:
            OutputError: DIR exists without --force; another process is writing it; an interrupted
                run exists without --resume or --force; --resume with a different configuration;
                folders that cannot be written.
        """
        resumed, error = False, None
        try:
            self.check(resume, force)
            if distributed.is_writer():
                self._take_lock(create=not resume)
                self.check(resume, force)  # again under the lock: the folders are ours now
            if resume:
                self._check_same_config(config)
                resumed = True
            elif self._holds_a_run() and not force:
                raise OutputError(
                    f"an interrupted run is waiting in {self.partial}; pass --resume to continue it "
                    "or --force to start over"
                )
        except OutputError as exc:
            error = str(exc)
        error = distributed.agree("results folder checked", error)
        if error is not None:
            self._drop_lock()
            _raise_if(error)
        if distributed.is_writer():
            try:
                if not resumed:  # a new run, or --force: nothing but the lock stays
                    self._clear()
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

    def _busy(self, owner: str) -> str:
        return (f"another process ({owner}) is writing {self.out} (its partial folder {self.partial} is locked); "
                "wait until it ends, or stop it and continue its run with --resume")

    def _take_lock(self, create: bool) -> None:
        """Hold the lock of the partial folder (made first when ``create``; without it, a missing
        folder is left to :meth:`check` to report). A lock this process already holds for the
        folder (a run of this process that raised) passes to this run.

        Raises:
            OutputError: another process holds it, or the folder cannot be made.
        """
        path = self.partial / LOCK_NAME
        held = _HELD.get(path)
        if held is not None and held.is_at(path):
            self._lock = held
            return
        if held is not None:  # its folder was removed by hand: that lock guards nothing any more
            held.release()
        for _ in range(3):  # a run that ends removes its folder; one made again at once is ours
            if create:
                self._created = self._created or not self.partial.exists()
                try:
                    self.partial.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise OutputError(f"cannot write in {self.partial.parent}: {exc.strerror}") from None
            try:
                self._lock = _Lock.take(path)
                break
            except _Taken as taken:
                self._created = False  # the folder is the other run's, even if we made it
                raise OutputError(self._busy(taken.owner)) from None
            except FileNotFoundError:
                if not create:
                    break  # nothing to resume: :meth:`check` says so
            except OSError as exc:
                self._created = False
                raise OutputError(f"cannot write in {self.partial}: {exc.strerror}") from None
        if self._lock is not None:
            _HELD[path] = self._lock

    def _drop_lock(self) -> None:
        """Let the lock go; a partial folder this run made and left empty goes first (only while
        the lock is held: without it the folder may be another run's)."""
        if self._created and self._lock is not None:
            with contextlib.suppress(OSError):
                if not self._holds_a_run():
                    shutil.rmtree(self.partial)
        self._created = False
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _holds_a_run(self) -> bool:
        """Whether the partial folder holds anything but its lock (a run's configuration, checkpoint)."""
        try:
            return any(child.name != LOCK_NAME for child in self.partial.iterdir())
        except OSError:
            return False

    def _clear(self) -> None:
        """Remove everything in the partial folder but its lock."""
        if not self.partial.is_dir():
            return
        for child in self.partial.iterdir():
            if child.name == LOCK_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

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
        self._created = False
        self._drop_lock()
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
        self._created = False
        self._drop_lock()
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


class _Taken(OutputError):  # noqa: N818 - caught by RunFolder, which says which folder
    """Another process holds the lock (``owner``: "pid P on HOST")."""

    def __init__(self, owner: str):
        super().__init__(f"locked by {owner}")
        self.owner = owner


class _Lock:
    """An exclusive ``flock`` on a lock file, held until :meth:`release`, until nothing in this
    process refers to it, or until the process ends (the kernel releases it then, even after
    SIGKILL). The file holds the owner's pid and host, for the message of a refused run."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd
        self._close = weakref.finalize(self, os.close, fd)

    def is_at(self, path: Path) -> bool:
        """Whether it is still held and its file is still the one at ``path``."""
        if not self._close.alive:
            return False
        try:
            return os.path.samestat(os.fstat(self.fd), os.stat(path))
        except OSError:
            return False

    @classmethod
    def take(cls, path: Path) -> _Lock | None:
        """Lock ``path`` (created if missing, in an existing folder); None where the filesystem
        has no locks (the run goes on unprotected, as before locks existed).

        Raises:
            _Taken: another process holds it.
            FileNotFoundError: the folder does not exist (or was removed while locking).
        """
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                if not _flock(fd, fcntl.LOCK_EX):
                    os.close(fd)
                    return None
            except _Taken:
                os.close(fd)
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
                return cls(path, fd)
            # Its owner removed the folder (published or discarded it) between our open and our lock.
            os.close(fd)
            if not path.parent.exists():
                raise FileNotFoundError(errno.ENOENT, "no such folder", str(path.parent))

    def release(self) -> None:
        self._close()  # closing the file lets the lock go; a second call does nothing
        if _HELD.get(self.path) is self:
            del _HELD[self.path]


#: Seconds a refused lock is tried again: another run's :func:`_owner` holds it for a moment only.
_RETRY_S = (0.05, 0.1, 0.2)
#: Errors of flock on a filesystem without locks.
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


def _flock(fd: int, kind: int) -> bool:
    """flock(fd, kind) without blocking; False where the filesystem has no locks.

    Raises:
        _Taken: another process holds a conflicting lock (tried again a few times first).
    """
    for pause in _RETRY_S:
        with contextlib.suppress(BlockingIOError):
            return _flock_once(fd, kind)
        time.sleep(pause)
    try:
        return _flock_once(fd, kind)
    except BlockingIOError:
        raise _Taken(_read_owner(fd)) from None


def _flock_once(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno in _NO_LOCKS:
            return False
        raise
    return True


def _read_owner(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return text or "pid unknown"


def _owner(path: Path) -> str | None:
    """"pid P on HOST" of another process that holds the lock ``path``, else None (touches nothing:
    a lock of this process, a missing file or a filesystem without locks is None)."""
    if path in _HELD:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if _flock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except _Taken as taken:
        return taken.owner
    finally:
        os.close(fd)


#: The partial folders' locks this process holds, by lock file (the runs of one process follow
#: each other, so a later run on a folder takes over the lock of an earlier one that raised).
_HELD: weakref.WeakValueDictionary[Path, _Lock] = weakref.WeakValueDictionary()


#: Private staging folders of this process (processes other than 0 write only there).
_PRIVATE: set[Path] = set()


def _private(path: Path) -> bool:
    return any(root == path or root in path.parents for root in _PRIVATE)
