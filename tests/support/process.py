"""Subprocess, polling, signalling and clean-up plumbing shared by the server helpers.

Everything here is stdlib only and free of pytest, because the benchmark harness drives
the same servers outside any test run.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from tests.support.errors import ServerCommandError, ServerTimeoutError, ServiceUnavailable

__all__ = [
    "DestroyOnExit",
    "clean_env",
    "pid_alive",
    "process_tree",
    "require_binary",
    "run",
    "run_as_prefix",
    "signal_tree",
    "track",
    "untrack",
    "wait_until",
]

INSTALL_HINT = "or run scripts/install-test-deps"

# Client tools read these from the environment; a developer's shell (PGHOST=...,
# REDISCLI_AUTH=..., MYSQL_HOST=...) must never point our commands at another server.
_FOREIGN_ENV_PREFIXES = ("PG", "REDISCLI_", "MYSQL_", "MARIADB_")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without client-tool variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV_PREFIXES)}
    env.update(extra or {})
    return env


def require_binary(name: str, apt_package: str, *, search: Sequence[Path] = ()) -> str:
    """Absolute path of `name` (in `search` first, then on PATH) or ServiceUnavailable."""
    for folder in search:
        candidate = folder / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServiceUnavailable(
            f"{name} not found; install it with: apt-get install -y {apt_package} ({INSTALL_HINT})"
        )
    return found


def run_as_prefix(user: str) -> list[str]:
    """The argv prefix that runs a command as OS user `user`.

    Empty unless we are root: a non-root test run owns its files and runs the servers
    as itself. As root we must switch, because PostgreSQL refuses to run as root.
    """
    if os.geteuid() != 0 or user == "root":
        return []
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise ServiceUnavailable(
            f"OS user {user!r} does not exist; apt-get install -y postgresql creates it"
        ) from None
    return [require_binary("runuser", "util-linux"), "-u", user, "--"]


def run(
    argv: Sequence[str],
    *,
    user: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 60.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` (as `user` when given), capture text output, raise on failure."""
    full = [*(run_as_prefix(user) if user else []), *argv]
    try:
        done = subprocess.run(
            full,
            cwd=cwd,
            env=clean_env(env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            # Without this a command we did not give input to would inherit the test
            # runner's stdin and could block on it.
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerTimeoutError(f"{' '.join(full)} did not finish within {timeout:g}s") from exc
    if check and done.returncode != 0:
        raise ServerCommandError(full, done.returncode, done.stdout, done.stderr)
    return done


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    details: Callable[[], str] | None = None,
) -> None:
    """Poll `condition` until it is true; ServerTimeoutError naming `what` otherwise.

    The pause between polls starts at 5 ms and grows to 100 ms, so fast events are
    seen at once and slow ones do not burn a core.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details else ""
            raise ServerTimeoutError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.1)


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a SIGSTOPped process is alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the parenthesised command name, which may hold spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def process_tree(root_pid: int) -> list[int]:
    """`root_pid` followed by all its descendants, parents before children."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree = [root_pid]
    for pid in tree:  # grows while iterating: a breadth-first walk
        tree.extend(children.get(pid, []))
    return tree


def signal_tree(root_pid: int, sig: signal.Signals) -> None:
    """Send `sig` to `root_pid` and every descendant.

    SIGSTOP goes to the parent first so it cannot fork a child we have not seen;
    SIGCONT goes to the children first so the parent wakes into a runnable tree.
    """
    pids = process_tree(root_pid)
    if sig == signal.SIGCONT:
        pids.reverse()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, sig)


class DestroyOnExit:
    """``with server:`` destroys the server on exit, whatever happened inside."""

    def destroy(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()


class Disposable(Protocol):
    """Anything with a `destroy()` that must run before the interpreter exits."""

    def destroy(self) -> None: ...


# Live instances, oldest first. atexit destroys them newest first, so a replica goes
# before its primary. A crashed test run would otherwise leave servers holding ports
# and shared memory until the machine is recycled.
_live: list[Disposable] = []
_live_lock = threading.Lock()


@functools.cache
def _install_atexit_hook() -> None:
    # On first use, not at import: importing the helpers must have no side effects.
    atexit.register(_destroy_all)


def track(instance: Disposable) -> None:
    """Destroy `instance` at interpreter exit unless `untrack`ed first."""
    _install_atexit_hook()
    with _live_lock:
        _live.append(instance)


def untrack(instance: Disposable) -> None:
    with _live_lock:
        if instance in _live:
            _live.remove(instance)


def _destroy_all() -> None:
    with _live_lock:
        leftovers = list(reversed(_live))
    for instance in leftovers:
        # Best effort at exit: one failing clean-up must not keep the rest alive.
        with contextlib.suppress(Exception):
            instance.destroy()
