"""Fixtures that run every fastpath test against both implementations.

``fees``, ``fx`` and ``velocity`` are parametrized over the compiled module (``_x_c``) and the
pure one (``_x_py``), imported directly rather than through the selector. A compiled module that
does not import is a failure, unless ``SWITCH_NO_EXTENSIONS=1`` says the build skipped it.
"""

import importlib
from types import ModuleType

import pytest

from fastpath._compat import NO_EXTENSIONS

IMPLEMENTATIONS = ("c", "py")


def load(module: str, implementation: str) -> ModuleType:
    """Import ``fastpath._<module>_<implementation>``, skipping or failing as the build demands."""
    name = f"fastpath._{module}_{implementation}"
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if implementation == "c" and NO_EXTENSIONS:
            pytest.skip(f"{name} is not built and SWITCH_NO_EXTENSIONS=1 says it need not be ({exc})")
        pytest.fail(
            f"{name} did not import although SWITCH_NO_EXTENSIONS is not set: build it with "
            f"`python setup.py build_ext --inplace` ({exc})"
        )


@pytest.fixture(scope="session", params=IMPLEMENTATIONS)
def fees(request: pytest.FixtureRequest) -> ModuleType:
    return load("fees", request.param)


@pytest.fixture(scope="session", params=IMPLEMENTATIONS)
def fx(request: pytest.FixtureRequest) -> ModuleType:
    return load("fx", request.param)


@pytest.fixture(scope="session", params=IMPLEMENTATIONS)
def velocity(request: pytest.FixtureRequest) -> ModuleType:
    return load("velocity", request.param)


@pytest.fixture(scope="session")
def fees_pair() -> tuple[ModuleType, ModuleType]:
    return load("fees", "c"), load("fees", "py")


@pytest.fixture(scope="session")
def fx_pair() -> tuple[ModuleType, ModuleType]:
    return load("fx", "c"), load("fx", "py")


@pytest.fixture(scope="session")
def velocity_pair() -> tuple[ModuleType, ModuleType]:
    return load("velocity", "c"), load("velocity", "py")


class FakeClock:
    """A clock the test moves by hand, in seconds."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
