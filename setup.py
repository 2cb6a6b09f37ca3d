"""The one thing pyproject.toml cannot say: the two optional compiled loops.

``synchro.endpoints.local._scan`` (``_scan.c``: list a folder) and
``synchro.endpoints.local._copy`` (``_copy.c``: copy a small file), in
synchro/endpoints/local/, are built when a C compiler and the
Python headers are at hand; without them the build goes on and synchro
does the same in Python (``scan.py``, ``filecopy.py`` beside them), only slower.
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension(
            f"synchro.endpoints.local.{name}",
            sources=[f"synchro/endpoints/local/{name}.c"],
            extra_compile_args=FLAGS,
            optional=True,
        )
        for name in ("_scan", "_copy")
    ]
)
