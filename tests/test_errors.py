"""One root for every error levelfield raises: ``except LevelfieldError`` catches them all."""

from __future__ import annotations

import importlib
import inspect

import pytest

from tests.helpers import ROOT


def _modules() -> list[str]:
    """Every module of jaxmodel and estimation, found from the files (so that a new module, or a
    folder without ``__init__.py``, cannot escape); ``__main__`` modules run the CLI when imported."""
    names = []
    for package in ("jaxmodel", "estimation"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _exception_classes() -> list[type[BaseException]]:
    """Every exception class defined (not merely imported) in one of those modules."""
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        found += [obj for _, obj in inspect.getmembers(module, inspect.isclass)
                  if issubclass(obj, BaseException) and obj.__module__ == name]
    return found


def test_every_exception_class_derives_from_the_one_root():
    """Each exception class defined anywhere in jaxmodel/ or estimation/ is a LevelfieldError,
    and the root is the same class in both packages' public API."""
    import estimation
    import jaxmodel
    from jaxmodel.errors import LevelfieldError

    assert jaxmodel.LevelfieldError is LevelfieldError is estimation.LevelfieldError
    classes = _exception_classes()
    # The walk finds the known bases of each layer (else it would pass by finding nothing).
    names = {cls.__name__ for cls in classes}
    assert {"ModelError", "EstimationError", "DistributedError", "OutputError"} <= names, names
    escaped = [f"{cls.__module__}.{cls.__qualname__}" for cls in classes if not issubclass(cls, LevelfieldError)]
    assert not escaped, f"not derived from LevelfieldError: {escaped}"


@pytest.mark.parametrize(("name", "base"), [
    ("jaxmodel.errors.ModelError", ValueError),
    ("estimation.errors.EstimationError", ValueError),
    ("estimation.distributed.DistributedError", RuntimeError),
])
def test_the_builtin_bases_are_kept(name, base):
    """Code that catches ValueError (bad input) or RuntimeError (processes out of step) still
    catches each layer's errors, and one ``except LevelfieldError`` catches an instance of each."""
    from jaxmodel.errors import LevelfieldError

    module, cls_name = name.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), cls_name)
    assert issubclass(cls, base)
    with pytest.raises(LevelfieldError):
        raise cls("x")
