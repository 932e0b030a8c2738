"""The estimator's compiled programs, kept across processes without tracing them again.

JAX's persistent compilation cache keeps XLA's executables, but every new process still traces the
Python model into a jaxpr and lowers it to StableHLO before it can look the executable up, which
for the moments-and-Jacobian program is a large part of a run whose programs are all cached
(``timing.json`` of a second run says how much). ``jax.export`` serialises the lowered program; a later process
deserialises it (milliseconds) and only compiles it, which the persistent cache answers.

:func:`call` runs a jitted function through such an artifact, stored beside the compilation
cache (``exported/`` in the same folder) under a key of everything that shapes the program: the
function's name, its static arguments, the shapes, dtypes and tree structure of its array
arguments, the versions of jax and jaxlib, and a hash of the source of ``jaxmodel`` and
``estimation.msm``. Any change to the code or the sizes makes a new key, never a stale program.
A program that cannot be exported (jax.export refuses host callbacks, for example), and every
program when no cache folder is set, is simply called.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import jax

_FOLDER: Path | None = None
_LOADED: dict[str, Callable] = {}


def set_folder(folder: str | Path | None) -> None:
    """Where exported programs live (None: do not export)."""
    global _FOLDER
    _FOLDER = None if folder is None else Path(folder) / "exported"
    _LOADED.clear()


@functools.cache
def _source_hash() -> str:
    """SHA-256 of the code the programs are traced from."""
    import estimation
    import jaxmodel

    digest = hashlib.sha256()
    roots = [Path(jaxmodel.__file__).parent, Path(estimation.__file__).parent]
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _key(name: str, static: tuple, leaves: list, treedef) -> str:
    import jaxlib

    spec = [(tuple(x.shape), str(x.dtype)) for x in leaves]
    text = repr((name, static, spec, str(treedef), jax.__version__, jaxlib.__version__, jax.default_backend(),
                 jax.config.jax_enable_x64, _source_hash()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def call(name: str, fn: Callable, static: tuple, *args):
    """``fn(*args, *static)`` through an exported program (``fn`` must take the arrays first and
    its static arguments last, and return a tuple of arrays).

    Falls back to calling ``fn`` directly when exporting is off or impossible, or when there is
    more than one device.
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    if _FOLDER is None or jax.device_count() > 1:
        return fn(*args, *static)
    leaves = [jax.numpy.asarray(x) for x in leaves]
    key = _key(name, static, leaves, treedef)
    program = _LOADED.get(key)
    if program is None:
        program = _load_or_export(key, fn, static, leaves, treedef)
        _LOADED[key] = program
    if program is False:
        return fn(*args, *static)
    return program(*leaves)


def _load_or_export(key: str, fn: Callable, static: tuple, leaves: list, treedef):
    path = _FOLDER / f"{key}.bin"
    if path.is_file():
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
            return jax.jit(exported.call)
        except Exception:  # noqa: BLE001 - a damaged artifact is re-exported, never trusted
            path.unlink(missing_ok=True)

    def flat(*flat_leaves):
        return fn(*jax.tree_util.tree_unflatten(treedef, list(flat_leaves)), *static)

    try:
        specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
        exported = jax.export.export(jax.jit(flat))(*specs)
        data = exported.serialize()
    except Exception:  # noqa: BLE001 - whatever jax.export refuses is run as it is
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written is no reason to fail a run
    return jax.jit(exported.call)
