"""Build the compiled core: every ``dicomnet/_codec/*.pyx`` becomes an extension.

Set ``DICOMNET_TRACE=1`` to compile with Cython line tracing (for coverage and
profilers); the default build is optimised and carries no tracing hooks.
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

TRACE = os.environ.get("DICOMNET_TRACE") == "1"

macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if TRACE:
    macros.append(("CYTHON_TRACE_NOGIL", "1"))

extensions = [
    Extension(
        path[:-4].replace(os.sep, "."),
        [path],
        include_dirs=[numpy.get_include()],
        define_macros=macros,
    )
    for path in sorted(glob.glob(os.path.join("dicomnet", "_codec", "*.pyx")))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "linetrace": TRACE,
        },
    ),
)
