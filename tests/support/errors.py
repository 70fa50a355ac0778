"""The one error tree of the test-server helpers.

Exception
├── ServiceUnavailable        a binary or server the helper needs is not on this
│                             machine; the message names the apt line that fixes it.
│                             Test code turns it into a skip (a failure when CI=true).
└── ServerError               a server we started or drove misbehaved
    ├── ServerCommandError    a client or control command (psql, pg_ctl, redis-cli,
    │                         mariadb) exited non-zero; carries its stderr
    └── ServerTimeoutError    a server did not reach the awaited state in time
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ServerCommandError", "ServerError", "ServerTimeoutError", "ServiceUnavailable"]


class ServiceUnavailable(Exception):  # noqa: N818 -- the name the test suites catch
    """A needed binary or external server is missing on this machine."""


class ServerError(RuntimeError):
    """A private server instance misbehaved."""


class ServerCommandError(ServerError):
    """A command exited non-zero; `stderr` says why."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"{' '.join(self.argv)} exited {returncode}: {stderr.strip() or stdout.strip()}"
        )


class ServerTimeoutError(ServerError, TimeoutError):
    """A server did not reach the awaited state before the deadline."""
