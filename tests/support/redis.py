"""Private, throw-away redis-server instances for cache tests and fault injection.

The machine's shared Redis on 6379 must not be killed or frozen by a test, so each
instance here is a child process of ours on a free loopback port, keeping nothing on
disk. Tests kill, freeze and restart it (on the same port, so clients reconnect).

    with RedisServer.start_new(tmp) as redis:
        redis.cli("SET", "k", "v")
        redis.pause()   # clients now time out instead of being refused
        redis.resume()
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import IO
from urllib.parse import quote

from tests.support.errors import ServerError
from tests.support.ports import free_port
from tests.support.process import (
    DestroyOnExit,
    clean_env,
    require_binary,
    run,
    track,
    untrack,
    wait_until,
)

__all__ = ["RedisServer"]

_APT_PACKAGE = "redis-server"
_PORT_ATTEMPTS = 3


class RedisServer(DestroyOnExit):
    """One redis-server child process on 127.0.0.1, optionally with a password."""

    host = "127.0.0.1"

    def __init__(self, root: Path, *, password: str | None) -> None:
        """Use start_new(); this only records where things are."""
        self.root = root
        self.log_path = root / "redis.log"
        self.port = free_port()
        self.password = password
        self._server_bin, self._cli_bin = _binaries()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @classmethod
    def start_new(
        cls, base_dir: Path, *, password: str | None = None, timeout: float = 10.0
    ) -> RedisServer:
        """Start a new instance in a fresh folder under `base_dir`; wait for PING."""
        _binaries()  # before making a folder that a missing binary would orphan
        base_dir.mkdir(parents=True, exist_ok=True)
        server = cls(
            Path(tempfile.mkdtemp(prefix="bbtest-redis-", dir=base_dir)), password=password
        )
        track(server)
        try:
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                try:
                    server.start(timeout)
                    break
                except ServerError:
                    # Another process took the port between free_port() and our bind.
                    if attempt < _PORT_ATTEMPTS and "already in use" in server._log_text():
                        server.port = free_port()
                        continue
                    raise
        except BaseException:
            server.destroy()
            raise
        return server

    @property
    def url(self) -> str:
        secret = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis://{secret}{self.host}:{self.port}/0"

    def is_running(self) -> bool:
        """True while the process lives (also while paused)."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start (again) on the same port and wait until PING answers; no-op if running."""
        if self.is_running():
            return
        argv = [
            self._server_bin,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
            "--daemonize",
            "no",
        ]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        self._close_log()
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
        process = self._process

        def answering() -> bool:
            if process.poll() is not None:
                raise ServerError(
                    f"redis-server on port {self.port} exited with {process.returncode}:\n"
                    + self._log_text()[-2000:]
                )
            return self.ping()

        wait_until(answering, timeout=timeout, what=f"redis-server on port {self.port}")

    def ping(self) -> bool:
        """True when the server answers PING (authenticating first if it has a password)."""
        commands = [["AUTH", self.password]] if self.password is not None else []
        commands.append(["PING"])
        payload = b"".join(_resp_encode(command) for command in commands)
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as conn:
                conn.sendall(payload)
                reply = b""
                while reply.count(b"\r\n") < len(commands):
                    chunk = conn.recv(4096)
                    if not chunk:
                        return False
                    reply += chunk
        except OSError:  # refused, reset, or timed out (e.g. while paused)
            return False
        return reply.endswith(b"+PONG\r\n")

    def cli(self, *args: str, timeout: float = 10.0) -> str:
        """Run one command through redis-cli and return its stdout without the newline.

        redis-cli exits 0 on error replies and prints them ("ERR ..."), so check the
        text; it raises only when redis-cli itself fails (e.g. cannot connect).
        """
        argv = [self._cli_bin, "-h", self.host, "-p", str(self.port)]
        if self.password is not None:
            argv += ["--no-auth-warning", "-a", self.password]
        return run([*argv, *args], timeout=timeout).stdout.rstrip("\n")

    def kill(self) -> None:
        """SIGKILL: the server vanishes at once, as in a crash."""
        if self._process is not None and self.is_running():
            self._process.kill()
            self._process.wait()
        self._close_log()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL after `timeout`); a paused server is resumed first."""
        process = self._process
        if process is None or not self.is_running():
            return
        process.terminate()
        # A stopped process keeps SIGTERM pending until it runs again.
        process.send_signal(signal.SIGCONT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._close_log()

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def destroy(self) -> None:
        """Kill the process and delete its folder."""
        untrack(self)
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<RedisServer {self.host}:{self.port} {self.root}>"

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None or not self.is_running():
            raise ServerError(f"redis-server on port {self.port} is not running")
        self._process.send_signal(sig)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _binaries() -> tuple[str, str]:
    return (
        require_binary("redis-server", _APT_PACKAGE),
        require_binary("redis-cli", _APT_PACKAGE),
    )


def _resp_encode(command: list[str]) -> bytes:
    """One command in RESP, the protocol redis-cli speaks."""
    parts = [f"*{len(command)}\r\n".encode()]
    for arg in command:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
