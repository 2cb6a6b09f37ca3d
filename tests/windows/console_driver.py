"""Press Ctrl+C (or Ctrl+Break) in a console, as a user does, while a ``synchro`` run copies.

Started by the Windows lane in a console of its own (``CREATE_NEW_CONSOLE``:
Wine makes one even without a terminal), it starts the run in that console
and holds it at a known point: as the first copy is about to be put in
place, the run says ``held`` and waits on a socket that the signal's
arrival writes to (``signal.set_wakeup_fd``). Then this driver sends the
real console event to every process of the console
(``GenerateConsoleCtrlEvent``), ignoring it itself. Nothing waits on a
clock: a run that no event reaches gives up after a minute and is not
interrupted, which the test reports.

Prints the run's exit code and output, or ``refused <error>`` when the
system refuses to generate the event.

Usage: console_driver.py c|break REPO SOURCE REPLICA (the run's folder is the current one)
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys

RUN = """
import os, signal, socket, sys
sys.path.insert(0, sys.argv[1])
woken, wake = socket.socketpair()
wake.setblocking(False)
signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False)
woken.settimeout(60)
real = os.replace
def held(a, b):
    os.replace = real
    print("held", flush=True)
    try:
        woken.recv(1)  # the console event's arrival; Python raises the interruption right after
    except TimeoutError:
        print("no console event arrived", flush=True)
    return real(a, b)
os.replace = held
from synchro.faces.cli import main
sys.exit(main(["--once", "--create-replica", sys.argv[2], sys.argv[3]]))
"""

EVENTS = {"c": (signal.CTRL_C_EVENT, "SIGINT"), "break": (signal.CTRL_BREAK_EVENT, "SIGBREAK")}


def main() -> None:
    event, name = EVENTS[sys.argv[1]]
    signal.signal(getattr(signal, name), signal.SIG_IGN)  # the event reaches this driver too
    run = subprocess.Popen(
        [sys.executable, "-c", RUN, *sys.argv[2:5]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    before = []  # what the run printed before it was held
    while (line := run.stdout.readline()) and line.strip() != "held":
        before.append(line)
    if not line:
        out, err = run.communicate()
        print(f"never held:\n{''.join(before)}{out}{err}")
        return
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    # Process group 0: every process attached to this console.
    if not kernel32.GenerateConsoleCtrlEvent(event, 0):
        error = ctypes.get_last_error()
        run.kill()
        run.communicate()
        print(f"refused {error} {ctypes.FormatError(error).strip()}")
        return
    out, err = run.communicate(timeout=120)
    print(f"exit {run.returncode}\n{''.join(before)}{out}{err}")


if __name__ == "__main__":
    main()
