"""The examples in the package's docstrings run, so they stay true (STYLE.md: a docstring
shows how a thing is used)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import nosgrid

#: Alembic's environment runs only inside Alembic
SKIP = ("nosgrid.store.migrations",)
MODULES = sorted(m.name for m in pkgutil.walk_packages(nosgrid.__path__, "nosgrid.")
                 if not m.name.startswith(SKIP))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
