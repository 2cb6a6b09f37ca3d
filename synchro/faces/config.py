"""The INI file of folder pairs (``backups.ini``), read into frozen dataclasses.

Example::

    [DEFAULT]
    logpath = .
    interval = 24

    [photos]
    source = ~/Pictures
    replica = /mnt/backup/Pictures
    exclude =
        *.tmp
        .cache/
    max_delete = 50%
    versions = /mnt/backup/VERSIONS/photos
    keep_versions = 30d,10

Each section but ``[DEFAULT]`` is a pair named after it; ``[DEFAULT]`` gives
values to every pair. Values go through the same parsers as the command's
options (:mod:`synchro.options`), so ``50%`` or ``yes`` mean the same
everywhere. Any mistake is a :class:`~synchro.errors.ConfigError` that names
the file, the section and the key (the line, for the file's form): a typo
such as ``max_delet`` must never silently leave a safety setting at its
default. Read with ``partial=True`` (``inv status``, ``inv pairs``), a
mistake inside one pair's section spares the others.

The file may start with a byte order mark (Notepad writes one).

Paths: ``~`` and ``$VARIABLES`` are expanded, and relative paths are relative
to the INI file's folder (cron starts in ``$HOME``, not beside the file).
"""

from __future__ import annotations

import configparser
import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..options import MirrorOptions, make_options, parse_interval
from ..pipeline.roots import is_remote, overlap, place, resolve, where_in

CONFIG_ENV = "SYNCHRO_CONFIG"
DEFAULT_CONFIG = "backups.ini"
DEFAULT_SECTION = "DEFAULT"
DEFAULT_LOGPATH = "."
DEFAULT_INTERVAL_HOURS = 24.0

PATH_KEYS = ("source", "replica", "logpath")
OPTION_KEYS = (
    "exclude",
    "checksum",
    "max_delete",
    "modify_window",
    "delete_excluded",
    "create_replica",
    "versions",
    "keep_versions",
    "s3_profile",
    "timeout",
)
# Options that name a folder: expanded and taken relative to the INI file like the PATH_KEYS.
OPTION_PATH_KEYS = ("versions",)
KEYS = (*PATH_KEYS, "interval", *OPTION_KEYS)

# $NAME or ${NAME} that os.path.expandvars left alone: the variable is not set.
_UNSET_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")


@dataclass(frozen=True)
class PairConfig:
    """One ``[name]`` section: absolute paths, hours, and checked mirror options."""

    name: str
    source: str
    replica: str
    logpath: str
    interval: float  # hours, > 0 (the watch raises it to the minimum)
    options: MirrorOptions


class SectionError(ConfigError):
    """A mistake inside one ``[section]``: the message names the file and the section."""

    def __init__(self, origin: str, section: str, detail: str) -> None:
        super().__init__(f"{origin}: [{section}] {detail}")
        self.origin = origin
        self.section = section
        self.detail = detail


@dataclass(frozen=True)
class PairProblem:
    """A ``[name]`` section that is no usable pair, and why (read with ``partial=True``)."""

    name: str
    error: SectionError


@dataclass(frozen=True)
class Config:
    """The pairs of one INI file, in the file's order, and the sections that are not usable pairs.

    ``problems`` is empty unless the file was read with ``partial=True``.
    """

    path: str
    entries: tuple[PairConfig | PairProblem, ...]

    @property
    def pairs(self) -> tuple[PairConfig, ...]:
        return tuple(entry for entry in self.entries if isinstance(entry, PairConfig))

    @property
    def problems(self) -> tuple[PairProblem, ...]:
        return tuple(entry for entry in self.entries if isinstance(entry, PairProblem))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.entries)

    def pair(self, name: str) -> PairConfig:
        """The pair called ``name``; an unknown or unusable one is an error (the known names listed)."""
        for entry in self.entries:
            if entry.name == name:
                if isinstance(entry, PairProblem):
                    raise entry.error
                return entry
        raise ConfigError(f"unknown pair {name!r} in {self.path}; its pairs are: {', '.join(self.names)}")

    def select(self, name: str | None) -> tuple[PairConfig, ...]:
        """Every usable pair, or only ``name`` when it is given."""
        return self.pairs if not name else (self.pair(name),)


def config_path(given: str | os.PathLike[str] | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """The INI to read: ``given``, else ``$SYNCHRO_CONFIG``, else ``backups.ini`` here."""
    if given:
        return os.fspath(given)
    return environ.get(CONFIG_ENV) or DEFAULT_CONFIG


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] = os.environ, *, partial: bool = False
) -> Config:
    """Read and check the INI file at ``path``; raise :class:`ConfigError` on any problem.

    With ``partial``, a mistake inside one pair's section does not stop the
    others: that section is a :class:`PairProblem` of the result (a mistake
    in ``[DEFAULT]``, or in the file's form, still raises).
    """
    shown = os.fspath(path)
    full = os.path.expanduser(shown)
    try:
        # utf-8-sig: Notepad saves UTF-8 with a byte order mark, which is no part of the text.
        with open(full, encoding="utf-8-sig") as file:
            text = file.read()
    except FileNotFoundError:
        # A relative name is looked for in the current folder, which is
        # not always the one the user thinks of (cron starts in $HOME).
        where = "" if os.path.isabs(full) else f" in {os.getcwd()}"
        raise ConfigError(
            f"config file not found: {shown}{where} (give --ini FILE or set {CONFIG_ENV})"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {shown}: {error}") from None
    folder = os.path.dirname(os.path.abspath(full))
    return parse_config(text, folder=folder, origin=shown, environ=environ, partial=partial)


def parse_config(
    text: str,
    *,
    folder: str,
    origin: str = DEFAULT_CONFIG,
    environ: Mapping[str, str] = os.environ,
    partial: bool = False,
) -> Config:
    """Parse INI ``text``; relative paths are taken from ``folder``, errors name ``origin``.

    ``partial``: as for :func:`load_config`.
    """
    # No interpolation: "max_delete = 50%" must not be read as a %-reference.
    # No default section either: [DEFAULT] is read as a plain section and
    # merged here, so that a key can be told apart from an inherited one.
    parser = configparser.ConfigParser(interpolation=None, default_section="\0")
    try:
        parser.read_string(text.removeprefix("\ufeff"), source=origin)
    except configparser.Error as error:
        raise ConfigError(_syntax_error(origin, error, text.splitlines())) from None

    defaults = dict(parser[DEFAULT_SECTION]) if parser.has_section(DEFAULT_SECTION) else {}
    # [DEFAULT] is checked once, so an error names [DEFAULT] rather than the
    # first pair that inherits it; it concerns every pair, so it stops them all.
    _check_keys(origin, DEFAULT_SECTION, defaults)
    _parse_values(origin, DEFAULT_SECTION, defaults, folder, environ, pair=False)
    names = [name for name in parser.sections() if name != DEFAULT_SECTION]
    if not names:
        raise ConfigError(f"{origin}: no pairs; add a section such as [photos] with source and replica")

    entries: list[PairConfig | PairProblem] = []
    for name in names:
        own = dict(parser[name])
        try:
            _check_keys(origin, name, own)
            entries.append(
                _make_pair(
                    origin,
                    name,
                    {**defaults, **own},
                    folder,
                    environ,
                    own_keep_versions="keep_versions" in own,
                )
            )
        except SectionError as error:
            if not partial:
                raise _with_default_hint(error) from None
            entries.append(PairProblem(name, _with_default_hint(error)))
    config = Config(origin, tuple(entries))
    check_overlaps(config)
    return config


def _syntax_error(origin: str, error: configparser.Error, lines: list[str]) -> str:
    """configparser's message as one line, ``file:line: what is wrong``."""
    if isinstance(error, configparser.MissingSectionHeaderError):
        line = error.line.strip()
        if line.startswith("["):
            return _broken_header(origin, error.lineno, line)
        return (
            f"{origin}:{error.lineno}: {line!r} is outside any section; "
            "the file starts with a section header such as [DEFAULT] or [photos]"
        )
    if isinstance(error, configparser.DuplicateOptionError):
        return f"{origin}:{error.lineno}: [{error.section}] {error.option} is given twice"
    if isinstance(error, configparser.DuplicateSectionError):
        return f"{origin}:{error.lineno}: section [{error.section}] is given twice"
    if isinstance(error, configparser.ParsingError) and error.errors:
        # configparser keeps the line as a repr; the text has it as written.
        lineno = error.errors[0][0]
        line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
        more = len(error.errors) - 1
        first = (
            _broken_header(origin, lineno, line)
            if line.startswith("[")
            else f"{origin}:{lineno}: expected key = value or a [section] header, got {line!r}"
        )
        return first + (f" (and {more} more wrong line{'s' if more > 1 else ''})" if more else "")
    # Any other: configparser's own words, on one line.
    return f"{origin}: {' '.join(str(error).split())}"


def _broken_header(origin: str, lineno: int, line: str) -> str:
    return f"{origin}:{lineno}: {line!r} is no section header: it needs a closing ]"


def _with_default_hint(error: SectionError) -> SectionError:
    """A section named almost DEFAULT (``[DEFAUL]``, ``[default]``) that fails as a pair was meant as it."""
    name = error.section
    if name != DEFAULT_SECTION and difflib.get_close_matches(
        name.upper(), [DEFAULT_SECTION], n=1, cutoff=0.75
    ):
        return SectionError(error.origin, name, f"{error.detail} (did you mean [{DEFAULT_SECTION}]?)")
    return error


def _check_keys(origin: str, section: str, keys: Iterable[str]) -> None:
    for key in keys:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SectionError(origin, section, f"unknown key {key!r}{hint}; known keys: {', '.join(KEYS)}")


def _parse_values(
    origin: str,
    section: str,
    values: Mapping[str, str],
    folder: str,
    environ: Mapping[str, str],
    *,
    pair: bool,
) -> tuple[dict[str, str], float, MirrorOptions]:
    """Check every value of a section; return its paths, interval and options."""
    try:
        return _values(values, folder, environ, pair=pair)
    except ConfigError as error:
        raise SectionError(origin, section, str(error)) from None


def _values(
    values: Mapping[str, str], folder: str, environ: Mapping[str, str], *, pair: bool
) -> tuple[dict[str, str], float, MirrorOptions]:
    if pair:
        for key in ("source", "replica"):
            if not values.get(key, "").strip():
                raise ConfigError(f"{key}: missing; every pair needs a source and a replica")
    paths = {
        key: _path(key, values[key], folder, environ)
        for key in PATH_KEYS
        if key in values and values[key].strip()
    }
    interval = DEFAULT_INTERVAL_HOURS
    if "interval" in values:
        interval = parse_interval(values["interval"].strip())
        if interval <= 0:
            raise ConfigError(f"interval: expected a number of hours > 0, got {values['interval']!r}")
    options: dict[str, object] = {}
    for key in OPTION_KEYS:
        if key not in values:
            continue
        value: object = values[key]
        if key in OPTION_PATH_KEYS:
            value = _path(key, values[key], folder, environ) if values[key].strip() else None
        # One key at a time, so the error is about this key.
        make_options(**{key: value})
        options[key] = value
    return paths, interval, make_options(**options)


def _make_pair(
    origin: str,
    name: str,
    values: Mapping[str, str],
    folder: str,
    environ: Mapping[str, str],
    *,
    own_keep_versions: bool = False,
) -> PairConfig:
    paths, interval, options = _parse_values(origin, name, values, folder, environ, pair=True)
    if own_keep_versions and options.versions is None:
        # A retention with nowhere to keep versions would silently keep nothing.
        raise SectionError(
            origin, name, "keep_versions: the pair has no versions folder; add versions = PATH"
        )
    logpath = paths.get("logpath") or _path("logpath", DEFAULT_LOGPATH, folder, environ)
    return PairConfig(name, paths["source"], paths["replica"], logpath, interval, options)


def _path(key: str, value: str, folder: str, environ: Mapping[str, str]) -> str:
    text = value.strip()
    if is_remote(text):
        return text  # a replica on another machine or in a bucket: neither expanded nor taken relative to the INI
    expanded = _expandvars(text, environ)
    unset = _UNSET_VARIABLE.search(expanded)
    if unset:
        raise ConfigError(f"{key}: environment variable {unset.group(0)} is not set (in {text!r})")
    if (expanded == "~" or expanded.startswith("~/")) and environ.get("HOME"):
        # As os.path.expanduser does, but from the same environment as $VARIABLES.
        expanded = environ["HOME"] + expanded[1:]
    expanded = os.path.expanduser(expanded)  # ~user
    # An absolute value replaces the folder. ".." is left to the kernel:
    # "conf/../x" means the parent of where the symlink conf points, which
    # normpath would get wrong; "." and "//" are safe to tidy.
    path = os.path.join(folder, expanded)
    return path if ".." in Path(path).parts else os.path.normpath(path)


def _expandvars(text: str, environ: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).strip("{}")
        return environ.get(name, match.group(0))

    return _UNSET_VARIABLE.sub(value, text)


def check_overlaps(config: Config) -> None:
    """Refuse pairs that would destroy each other's folders.

    The engine checks one pair at a time; these are the dangers between two
    pairs of one file: a replica named twice or inside another replica (one
    mirror deletes what the other wrote), and a replica that is, or holds,
    another pair's source (that pair's originals would be overwritten or
    deleted). Two pairs may share a source. Folders are compared by
    identity (:func:`~synchro.roots.where_in`): a bind mount or a symlink
    is another name for the same folder.
    """
    places = [(pair, place(resolve(pair.source)), place(resolve(pair.replica))) for pair in config.pairs]
    for i, (first, _, first_rep) in enumerate(places):
        for j, (second, second_src, second_rep) in enumerate(places):
            if i == j:
                continue
            inside = where_in(second_rep, first_rep)
            if j > i and inside == "":
                raise ConfigError(
                    f"{config.path}: pairs [{first.name}] and [{second.name}] have the same replica "
                    f"{first.replica}; each pair needs its own"
                )
            if inside:
                raise ConfigError(
                    f"{config.path}: the replica of [{second.name}] is inside the replica of "
                    f"[{first.name}] ({first.replica}), whose mirror would delete it"
                )
            if overlap(first_rep, second_src):
                raise ConfigError(
                    f"{config.path}: the replica of [{first.name}] ({first.replica}) overlaps the source "
                    f"of [{second.name}] ({second.source}); a mirror would overwrite that pair's originals"
                )
    for i, (first, _, _) in enumerate(places):
        if first.options.versions is None:
            continue
        kept = place(resolve(first.options.versions))
        for j, (second, second_src, second_rep) in enumerate(places):
            if i == j:
                continue
            for role, folder in (("replica", second_rep), ("source", second_src)):
                if overlap(kept, folder):
                    raise ConfigError(
                        f"{config.path}: the versions folder of [{first.name}] ({first.options.versions}) "
                        f"overlaps the {role} of [{second.name}]; keep versions outside every pair's folders"
                    )
            other = second.options.versions
            if j > i and other is not None and overlap(kept, place(resolve(other))):
                raise ConfigError(
                    f"{config.path}: pairs [{first.name}] and [{second.name}] share the versions folder "
                    f"{first.options.versions}; give each pair its own (such as VERSIONS/{first.name})"
                )
