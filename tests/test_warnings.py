"""The suite turns deprecation warnings raised from our own code into errors (pyproject.toml's
``filterwarnings``), so that a library's coming removal fails a test before it breaks a user."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest


def _warn_from(module: str, category: type[Warning]) -> None:
    """Warn as code of ``module`` does: Python attributes a warning to the module of its frame."""
    exec("warnings.warn('probe', category)", {"__name__": module, "warnings": warnings, "category": category})


@pytest.mark.parametrize("module", ["jaxmodel.probe", "estimation.output.probe"])
@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning, FutureWarning])
def test_a_deprecation_from_our_code_is_an_error(module, category):
    """Each kind of deprecation warning, raised from a module of jaxmodel or estimation, is raised
    as an exception under pytest; only our own code is held to it (from another module it stays a
    warning)."""
    with pytest.raises(category, match="probe"):
        _warn_from(module, category)
    with pytest.warns(category, match="probe"):
        _warn_from("someone_else.module", category)


@pytest.mark.skipif(not hasattr(pd.errors, "Pandas4Warning"), reason="pandas < 3 has no Pandas4Warning")
def test_pandas_4_warnings_from_our_code_are_errors():
    """pandas' warning of what pandas 4 removes (the one latex.read_estimates used to meet: a float
    column filled with a string), raised by a call from our code, is an error."""
    call = "pd.Series([np.nan]).fillna('')"
    with pytest.raises(pd.errors.Pandas4Warning):
        exec(call, {"__name__": "estimation.output.probe", "pd": pd, "np": np})
