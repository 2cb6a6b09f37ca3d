"""The one thing pyproject.toml cannot say: the two optional compiled loops.

``synchro._scan`` (synchro/_scan.c: list a folder) and ``synchro._copy``
(synchro/_copy.c: copy a small file) are built when a C compiler and the
Python headers are at hand; without them the build goes on and synchro
does the same in Python (synchro/scan.py, synchro/filecopy.py), only slower.
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension(name, sources=[f"synchro/{name.split('.')[1]}.c"], extra_compile_args=FLAGS, optional=True)
        for name in ("synchro._scan", "synchro._copy")
    ]
)
