"""The supervisor between the cockpit and a local command (Linux): the command's whole tree dies with it.

Run by path, standard library only (`python -I -S reaper.py STATUS_FD PARENT GRACE_S -- ARGV...`), as the
cockpit's direct child, in its own session, with the command's environment. Why a process in between:

* PR_SET_PDEATHSIG only reaches a *direct* child: the cockpit's `kill -9` SIGTERMs this supervisor, which
  then ends everything the command started. The signal is tied to the thread that spawned us — the
  cockpit's event-loop thread, which lives as long as the cockpit.
* PR_SET_CHILD_SUBREAPER keeps the tree ours: a grandchild that calls `setsid` leaves the process group
  (killpg cannot reach it), but when its parent exits it is re-parented here, not to init, so walking
  /proc from this pid still finds it.

Protocol: the command is spawned in a new session (its pid is its process group); one JSON object per line
on STATUS_FD: `{"started": pid}` or `{"error": errno}`; `{"leftovers": [[pid, name], ...]}` when processes
outlived the command and were killed; finally `{"exit": status}` (negative: killed by that signal), with
`"stopped": true` only when a SIGTERM of ours stopped the command (not when it came late). The command is
finished when its main process exits: survivors are SIGKILLed at once, not waited for, so they cannot hold
the output pipes open. SIGTERM (a cancel or timeout from the cockpit, or the cockpit's death) TERMs the
tree, waits up to GRACE_S for it to go, then KILLs what is left.
Limits: a process that is not ours to signal (setuid) cannot be killed; one that a service manager
adopted (systemd-run) has left the tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
WATCH = STOP | {signal.SIGCHLD}
# Dispositions Python changes at start-up that the command must not inherit (as subprocess does).
RESTORE = (signal.SIGPIPE, signal.SIGXFSZ, *WATCH)
SWEEP_ROUNDS = 50
# The command's own LC_CTYPE ("" when it had none): Python's locale coercion (PEP 538) may set or change
# LC_CTYPE in our environment, and the command must get exactly the environment it was given.
LC_CTYPE_VAR = "_ROLLBACK_TUI_LC_CTYPE"


def descendants(root: int) -> list[tuple[int, str]]:
    """Live (non-zombie) processes below `root`, with their names, from /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append((int(entry), name))
    found: list[tuple[int, str]] = []
    todo = [root]
    while todo:
        for pid, name in children.get(todo.pop(), []):
            found.append((pid, name))
            todo.append(pid)
    return found


class Reaper:
    def __init__(self, status_fd: int, grace_s: float) -> None:
        self.status_fd = status_fd
        self.grace_s = grace_s
        self.me = os.getpid()
        self.main: int | None = None
        self.status: int | None = None  # the command's exit status, once reaped

    def report(self, **message: object) -> None:
        with contextlib.suppress(OSError):  # the cockpit is gone (why we are stopping): nobody to tell
            os.write(self.status_fd, json.dumps(message).encode() + b"\n")

    def reap(self) -> None:
        """Collect every exited child (re-parented orphans included); note the command's status."""
        while True:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.main:
                self.status = os.waitstatus_to_exitcode(raw)

    def signal_tree(self, sig: signal.Signals) -> list[tuple[int, str]]:
        tree = descendants(self.me)
        for pid, _ in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        return tree

    def sweep(self) -> list[tuple[int, str]]:
        """SIGKILL the tree until nothing is left (a process may fork while we look)."""
        killed: dict[int, str] = {}
        for _ in range(SWEEP_ROUNDS):
            tree = self.signal_tree(signal.SIGKILL)
            if not tree:
                break
            killed.update(tree)
            signal.sigtimedwait({signal.SIGCHLD}, 0.02)
            self.reap()
        return sorted(killed.items())

    def wait_for_tree(self, deadline: float) -> None:
        """After a stop request: until the command and all it started are gone, or the grace ends."""
        while time.monotonic() < deadline:
            self.reap()
            if self.status is not None and not descendants(self.me):
                return
            signal.sigtimedwait(WATCH, min(0.1, max(0.0, deadline - time.monotonic())))

    def run(self, argv: list[str], env: dict[str, str]) -> int:
        try:
            self.main = os.posix_spawnp(argv[0], argv, env, setsid=True, setsigmask=(), setsigdef=RESTORE)
        except OSError as exc:
            self.report(error=exc.errno or 0)
            return 127
        self.report(started=self.main)
        stopping = False
        while self.status is None:
            info = signal.sigwaitinfo(WATCH)
            if info.si_signo in STOP:
                stopping = True
                break
            self.reap()
        # A command that exited just as the stop came (SIGTERM is taken before a pending SIGCHLD) ended
        # on its own: its status is its own, not a timeout's.
        ended_first = False
        if stopping:
            self.reap()
            ended_first = self.status is not None
            self.signal_tree(signal.SIGTERM)
            self.wait_for_tree(time.monotonic() + self.grace_s)
        leftovers = self.sweep()
        if leftovers and not stopping:
            self.report(leftovers=leftovers)
        deadline = time.monotonic() + 1.0  # the command itself may only now have been killed
        while self.status is None and time.monotonic() < deadline:
            signal.sigtimedwait({signal.SIGCHLD}, 0.05)
            self.reap()
        if self.status is not None:
            self.report(exit=self.status, **({"stopped": not ended_first} if stopping else {}))
        return 0


def main(args: list[str]) -> int:
    status_fd, parent, grace_s = int(args[0]), int(args[1]), float(args[2])
    argv = args[4:]
    os.set_inheritable(status_fd, False)  # the command must not hold the status pipe open
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCH)  # taken with sigwaitinfo, never lost in between
    import ctypes  # here, not at the top: the cockpit imports this module for LC_CTYPE_VAR

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the cockpit died before PDEATHSIG was armed: start nothing
        return 1
    env = dict(os.environ)
    env.pop("LC_CTYPE", None)
    if lc_ctype := env.pop(LC_CTYPE_VAR, ""):
        env["LC_CTYPE"] = lc_ctype
    return Reaper(status_fd, grace_s).run(argv, env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
