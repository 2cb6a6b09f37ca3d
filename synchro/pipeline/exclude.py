"""Exclude patterns (gitignore syntax, relative to the source) as a predicate."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    import pathspec


class Excluder:
    """``excluder(path, is_dir)``: is this source-relative path left out?

    Folders are matched with a trailing ``/`` so that ``cache/`` patterns
    match folders only, as in git. An excluded folder is not descended into.
    ``fixed`` paths are left out whatever the patterns say (the log folder
    when it lives inside the source).
    """

    def __init__(self, patterns: Iterable[str], fixed: Iterable[str] = ()) -> None:
        self.patterns = tuple(patterns)
        self._spec: pathspec.GitIgnoreSpec | None = None
        try:
            if self.patterns:
                # Imported here: pathspec takes longer to import than a
                # no-change run of a small tree takes to scan.
                import pathspec

                self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)
        # pathspec reports bad patterns this way; a bad character range such
        # as "[z-a]" only fails when the regular expression is compiled.
        except (ValueError, TypeError, re.error) as error:
            raise ConfigError(f"exclude: invalid pattern: {error}") from None
        self._fixed = frozenset(fixed)

    def __call__(self, path: str, is_dir: bool) -> bool:
        if path in self._fixed:
            return True
        if self._spec is None:
            return False
        return self._spec.match_file(path + "/" if is_dir else path)

    def __bool__(self) -> bool:
        return bool(self._fixed) or self._spec is not None
