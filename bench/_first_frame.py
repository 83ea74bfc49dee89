"""Run a Textual program and report the moment of its first painted frame (bench helper, not product code).

    python bench/_first_frame.py FD [--screen NAME] -m rollback_tui open playbook.yaml ...
    python bench/_first_frame.py FD path/to/app.py

Wraps `App._display` (the call that hands a finished frame to the driver) before the program starts,
writes `time.time()` of the first call to file descriptor FD, one line, and runs the program as
`python -m` / `python FILE` would. With `--screen NAME` it writes a second line: the first frame painted
by a screen of class NAME (the cockpit's panes, after its loading screen).
Both the baseline and the cockpit go through this same wrapper, so its own cost is in both.
"""

from __future__ import annotations

import os
import runpy
import sys
import time

from textual.app import App

_fd = int(sys.argv[1])
args = sys.argv[2:]
_screen = ""
if args[0] == "--screen":
    _screen, args = args[1], args[2:]
_first = True
_display = App._display


def _report() -> None:
    os.write(_fd, f"{time.time()!r}\n".encode())


def _close() -> None:
    global _fd
    os.close(_fd)
    _fd = -1


def _first_frame(self: App, screen: object, renderable: object) -> None:
    global _first
    if _fd >= 0:
        if _first:
            _first = False
            _report()
            if not _screen:
                _close()
        if _screen and type(screen).__name__ == _screen:
            _report()
            _close()
    _display(self, screen, renderable)  # type: ignore[arg-type]


App._display = _first_frame  # type: ignore[method-assign]
if args[0] == "-m":
    sys.argv = [args[1], *args[2:]]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
