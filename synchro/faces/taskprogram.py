"""``synchro-tasks``: the Invoke tasks as an installed command, from any folder.

An Invoke :class:`~invoke.program.Program` over the tasks' collection, so
Invoke's conventions hold: ``synchro-tasks --list`` (``-l``),
``synchro-tasks --help TASK``, ``synchro-tasks TASK --flags``. What differs
from ``inv``:

- A usage error exits 2, as the ``synchro`` command's and the README's
  (Invoke's own program exits 1): an unknown flag or task, a missing value.
- Invoke's options for running shell commands (``--echo``, ``--pty``,
  ``--dry``, ``--hide``, ``--warn-only``, ``--command-timeout``, the sudo
  prompt) and its configuration file (``--config``/``-f``) are not offered:
  the tasks run no shell command and read no Invoke configuration. An
  option meant for synchro is refused with a line that names the right one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from invoke.exceptions import Exit, ParseError
from invoke.parser.argument import Argument
from invoke.program import Program

from .. import __version__
from ..errors import ExitCode
from .taskargs import refuse_misused_invoke_options
from .tasks import namespace

NAME = "synchro-tasks"

# Invoke's core options that concern shell commands or Invoke's configuration.
NOT_OFFERED = frozenset(
    {"command-timeout", "config", "dry", "echo", "hide", "prompt-for-sudo-password", "pty", "warn-only"}
)


@contextmanager
def _usage_errors() -> Iterator[None]:
    try:
        yield
    except ParseError as error:
        raise Exit(f"synchro: error: {error} (see {NAME} --help)", code=int(ExitCode.USAGE)) from None


class TasksProgram(Program):
    """Invoke's program over the synchro tasks; usage errors exit 2."""

    def core_args(self) -> list[Argument]:
        return [argument for argument in super().core_args() if argument.name not in NOT_OFFERED]

    def parse_core(self, argv: list[str] | None) -> None:
        self.normalize_argv(argv)
        refuse_misused_invoke_options(self.argv[1:])
        with _usage_errors():
            super().parse_core(argv)

    def parse_tasks(self) -> None:
        with _usage_errors():
            super().parse_tasks()

    def parse_cleanup(self) -> None:
        with _usage_errors():
            super().parse_cleanup()

    def update_config(self, merge: bool = True) -> None:
        # Invoke's would read the options not offered here; the tasks use
        # none of its settings (no runtime configuration file, no run() options).
        if merge:
            self.config.merge()


def main() -> None:
    """The ``synchro-tasks`` command."""
    TasksProgram(namespace=namespace, name=NAME, binary=NAME, binary_names=[NAME], version=__version__).run()
