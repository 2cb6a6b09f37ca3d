"""How the Invoke tasks read their flags, under ``inv`` and ``synchro-tasks`` alike.

Invoke types a flag by its default and casts with that type: ``--max abc``
would end in a ``ValueError`` traceback, a float flag is shown in ``--help``
as if it took no value, and every other one as ``STRING``. Here each flag
that takes a value has a :class:`Value`: the name ``--help`` shows for it
(``HOURS``, ``N|P%``) and the function that reads it, one of synchro's own
parsers; a bad value is one line and exit 2, as for the ``synchro`` command.

Invoke also has options of its own that a user of the tasks means as
something else: ``--config``/``-f`` (Invoke's configuration file, an INI of
pairs ends in a traceback), ``-c`` (a collection of tasks) and ``--dry`` (it
echoes shell commands; the backup would run for real). :func:`misused_invoke_option`
finds them, so that they are refused with a line that names the right flag.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from invoke.collection import Collection
from invoke.exceptions import Exit
from invoke.parser.argument import Argument
from invoke.parser.context import ParserContext
from invoke.tasks import Task

from ..errors import ConfigError, ExitCode

# The files Invoke itself can read as its configuration: with these, --config is meant for Invoke.
INVOKE_CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".py")


class Value(NamedTuple):
    """What a flag's value is: its name in ``--help``, and how it is read."""

    metavar: str
    # Raises ConfigError for a bad value; "key: " at the start of its message
    # (the INI's name for the option) is replaced by the flag's name.
    read: Callable[[str], object]
    # Invoke's own --help (under `inv`) knows two: int shows INT, anything else STRING.
    kind: type = str


class TypedArgument(Argument):
    """An Invoke argument whose value is read by its :class:`Value`."""

    def __init__(self, value: Value, **opts: Any) -> None:
        super().__init__(kind=value.kind, **opts)
        self.metavar = value.metavar
        self._read = value.read

    def set_value(self, value: Any, cast: bool = True) -> None:
        if not cast or not isinstance(value, str):
            super().set_value(value, cast=cast)
            return
        try:
            parsed = self._read(value)
        except ConfigError as error:
            detail = str(error).removeprefix(f"{self.name}: ")
            # Exit, not ParseError: Invoke's own program exits 1 on a ParseError.
            raise Exit(f"synchro: error: --{self.names[0]}: {detail}", code=int(ExitCode.USAGE)) from None
        super().set_value(parsed, cast=False)

    def __repr__(self) -> str:
        # Invoke's parse errors show the flag by its repr ("Flag ... needed value").
        return f"--{self.names[0]}"


class TypedTask(Task[Any]):
    """A task whose flags have the short names and the values its class gives.

    Short flags are chosen, not left to Invoke, which would give the first
    free letter (``--checksum`` would get ``-h`` and hide ``inv TASK -h``).
    """

    short_flags: ClassVar[Mapping[str, str]] = {}
    values: ClassVar[Mapping[str, Value]] = {}

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        long_name = opts["names"][0]
        opts["names"] = [long_name, self.short_flags[name]] if name in self.short_flags else [long_name]
        return opts

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        return [self._typed(argument) for argument in super().get_arguments(ignore_unknown_help)]

    def _typed(self, argument: Argument) -> Argument:
        value = self.values.get(argument.name or "")
        if value is None:
            return argument
        return TypedArgument(
            value,
            names=argument.names,
            default=argument.default,
            help=argument.help,
            positional=argument.positional,
            optional=argument.optional,
            incrementable=argument.incrementable,
            attr_name=argument.attr_name,
        )


class _TypedContext(ParserContext):
    """A task's flags as ``--help`` shows them: ``-i HOURS, --interval=HOURS``."""

    def help_for(self, flag: str) -> tuple[str, str]:
        names, text = super().help_for(flag)
        argument = self.flags[flag]
        if isinstance(argument, TypedArgument):
            shown = (
                f"{name} {argument.metavar}" if len(name.strip("-")) == 1 else f"{name}={argument.metavar}"
                for name in self.names_for(flag)
            )
            names = ", ".join(sorted(shown, key=len))
        return names, text


class TaskCollection(Collection):
    """The tasks' collection, whose ``--help`` shows what each flag's value is.

    (Under ``inv``, Invoke copies the collection into one of its own and
    shows ``INT`` and ``STRING``; ``synchro-tasks`` uses this one.)
    """

    def to_contexts(self, ignore_unknown_help: bool | None = None) -> list[ParserContext]:
        return [
            _TypedContext(
                name=primary,
                aliases=aliases,
                args=self[primary].get_arguments(ignore_unknown_help=ignore_unknown_help),
            )
            for primary, aliases in self.task_names.items()
        ]


def misused_invoke_option(argv: Sequence[str]) -> str | None:
    """What is wrong when ``argv`` gives an Invoke option meant for synchro; None when none is.

    Anywhere on the line: Invoke reads its own options after a task name too.
    """
    tokens = list(itertools.takewhile(lambda token: token != "--", argv))
    for index, token in enumerate(tokens):
        flag, equals, value = token.partition("=")
        if not equals:
            value = tokens[index + 1] if index + 1 < len(tokens) else ""
        if flag in ("--config", "-f") and not value.lower().endswith(INVOKE_CONFIG_SUFFIXES):
            return (
                f"{flag} is Invoke's own option, for Invoke's configuration file; "
                f"give the file of pairs with --ini {value or 'FILE'}, after the task name"
            )
        if flag in ("--collection", "-c") and (value.lower().endswith(".ini") or os.path.isfile(value)):
            return (
                f"{flag} is Invoke's own option, for a collection of tasks; "
                f"give the file of pairs with --ini {value}, after the task name"
            )
        if flag in ("--dry", "-R"):
            return (
                f"{flag} is Invoke's own option (it echoes shell commands instead of running them, "
                "and the tasks run none); a dry run of a task is --dry-run, after the task name"
            )
    return None


def refuse_misused_invoke_options(argv: Sequence[str]) -> None:
    """Exit 2 with one line when :func:`misused_invoke_option` finds one in ``argv``."""
    problem = misused_invoke_option(argv)
    if problem:
        raise Exit(f"synchro: error: {problem}", code=int(ExitCode.USAGE))
