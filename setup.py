"""Build script: compiles ``fastpath/*_c.pyx`` with Cython unless ``SWITCH_NO_EXTENSIONS=1``.

All metadata lives in ``pyproject.toml``; this file only declares the optional extensions so that
a build with zero or more ``.pyx`` files works, and a pure-Python build is one variable away.
"""

import glob
import os

from setuptools import setup


def _extensions() -> list:
    if os.environ.get("SWITCH_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    sources = sorted(glob.glob(os.path.join("fastpath", "*_c.pyx")))
    if not sources:
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    modules = [
        Extension(
            "fastpath." + os.path.splitext(os.path.basename(path))[0],
            [path],
            extra_compile_args=["-O3"],
        )
        for path in sources
    ]
    return cythonize(
        modules,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )


setup(ext_modules=_extensions())
