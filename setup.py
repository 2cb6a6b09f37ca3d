"""The one thing pyproject.toml cannot say: the optional compiled scan loop.

``synchro._scan`` (synchro/_scan.c) is built when a C compiler and the
Python headers are at hand; without them the build goes on and synchro
uses the same loop in Python (see synchro/scan.py), only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "synchro._scan",
            sources=["synchro/_scan.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
