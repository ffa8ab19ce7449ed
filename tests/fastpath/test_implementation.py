"""The selectors load the compiled modules whenever the build was not told to skip them."""

import importlib

import pytest

from fastpath import _compat, fees, fx, velocity

SELECTORS = (fees, fx, velocity)


@pytest.mark.skipif(_compat.NO_EXTENSIONS, reason="SWITCH_NO_EXTENSIONS=1 selects pure Python on purpose")
@pytest.mark.parametrize("selector", SELECTORS, ids=lambda module: module.__name__)
def test_compiled_build_loads_the_compiled_module(selector):
    assert selector.IMPLEMENTATION == "c", (
        f"{selector.__name__} fell back to pure Python: the compiled extension was not built or did not "
        "import (run `python setup.py build_ext --inplace`, or set SWITCH_NO_EXTENSIONS=1 on purpose)"
    )


@pytest.mark.skipif(not _compat.NO_EXTENSIONS, reason="only meaningful with SWITCH_NO_EXTENSIONS=1")
@pytest.mark.parametrize("selector", SELECTORS, ids=lambda module: module.__name__)
def test_no_extensions_selects_pure_python(selector):
    assert selector.IMPLEMENTATION == "py"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", False), ("0", False), ("1", True), ("yes", True)],
)
def test_switch_no_extensions_is_read_like_setup_py(monkeypatch, value, expected):
    monkeypatch.setenv("SWITCH_NO_EXTENSIONS", value)
    try:
        assert importlib.reload(_compat).NO_EXTENSIONS is expected
    finally:
        monkeypatch.undo()
        importlib.reload(_compat)


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        (fees, {"FeeSchedule", "FeeTable", "quote_fee", "rank_quotes"}),
        (fx, {"FxQuote", "RateTable", "convert", "set_rates", "load_ecb_csv", "default_table"}),
        (velocity, {"VelocityCounters"}),
    ],
    ids=["fees", "fx", "velocity"],
)
def test_selectors_expose_the_public_api(selector, names):
    assert names <= set(selector.__all__)
    for name in names:
        assert getattr(selector, name) is not None


def test_fastpath_imports_neither_switch_nor_adapters():
    import pathlib
    import re

    root = pathlib.Path(fees.__file__).parent
    for path in [*root.glob("*.py"), *root.glob("*.pyx")]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+(switch|adapters)\b", text, re.MULTILINE), path.name
