"""Child processes of the developer tooling: ports, parent death, waiting, stopping.

Used by the launcher, the embedded and test servers, the test support (`apps.testing`) and
the benchmarks; never by the app itself (an import-linter contract in pyproject.toml). No
Django import here: the launcher runs before the environment that configures Django is known.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when its parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class WaitTimeout(RuntimeError):
    """`wait_until` gave up."""


def wait_until(
    predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.1
) -> object:
    """Poll until `predicate` returns something truthy and return it; WaitTimeout after
    `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def stop_process(
    proc: subprocess.Popen,
    *,
    timeout: float,
    sig: int = signal.SIGTERM,
    group: bool = False,
    on_kill: Callable[[], object] | None = None,
) -> None:
    """Stop a child and reap it: `sig`, up to `timeout` s to exit, then SIGKILL.

    With `group`, both signals go to the child's process group (it was started with
    `start_new_session=True`), and whatever is left of the group is killed even when the
    child itself exited in time. `on_kill` runs just before a SIGKILL that the child earned
    by not exiting in time (to say so in a log).
    """

    def send(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)

    stuck = False
    if proc.poll() is None:
        send(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stuck = True
            if on_kill is not None:
                on_kill()
    if stuck or group:
        send(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
