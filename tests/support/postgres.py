"""Private, throw-away PostgreSQL instances for integration, fault and bench runs.

Tests need a primary (and replicas, see postgres_replica) that they may stop, freeze
and lag at will, which the machine's shared server on 5432 must never suffer. Each
instance lives in its own folder, listens on a free loopback port and on a socket in
that folder, and runs as the `postgres` OS user when we are root (PostgreSQL refuses
root).

    with PostgresServer.start_primary(tmp) as primary, \\
            PostgresServer.start_replica(primary, tmp) as replica:
        primary.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        replica.wait_replay_caught_up()
        assert replica.psql("SELECT x FROM t") == "1"
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from tests.support.errors import ServerCommandError, ServerError
from tests.support.ports import free_port
from tests.support.postgres_files import (
    SETTINGS_FILE,
    AuthMode,
    base_settings,
    hba_text,
    make_instance_dir,
    postgres_bin_dir,
    server_os_user,
    settings_text,
    write_owned,
)
from tests.support.process import (
    DestroyOnExit,
    pid_alive,
    run,
    signal_tree,
    track,
    untrack,
    wait_until,
)

if TYPE_CHECKING:
    from tests.support.postgres_replica import PostgresReplica

__all__ = ["AuthMode", "PostgresServer", "StopMode", "sql_literal"]

StopMode = Literal["smart", "fast", "immediate"]

# A port taken between free_port() and the bind is retried on a fresh port, at most
# this many times; only while creating an instance, never on a restart.
_PORT_ATTEMPTS = 3


class PostgresServer(DestroyOnExit):
    """One private PostgreSQL instance; a primary unless it is a PostgresReplica."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        root: Path,
        bin_dir: Path,
        os_user: str,
        auth: AuthMode,
        password: str | None,
        settings: Mapping[str, str],
    ) -> None:
        """Use start_primary() / start_replica(); this only records where things are."""
        self.root = root
        self.data_dir = root / "data"
        self.log_path = root / "postgres.log"
        self.name = root.name
        self.port = free_port()
        self.auth: AuthMode = auth
        self.password = password
        self.bin_dir = bin_dir
        self.os_user = os_user
        self._extra_settings = dict(settings)
        self._frozen = False

    @classmethod
    def start_primary(
        cls,
        base_dir: Path,
        *,
        auth: AuthMode = "trust",
        password: str | None = None,
        settings: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> PostgresServer:
        """initdb a new cluster under `base_dir`, start it and wait until it serves.

        auth="scram" makes TCP logins need the `postgres` user's `password` (the
        socket, which the helpers use, stays trusted); `settings` add to or override
        the postgresql.conf settings of postgres_files.base_settings().
        """
        if auth == "scram" and password is None:
            raise ValueError('auth="scram" needs the postgres user\'s password')
        os_user = server_os_user()
        server = cls(
            root=make_instance_dir(base_dir, "primary", os_user),
            bin_dir=postgres_bin_dir(),
            os_user=os_user,
            auth=auth,
            password=None,
            settings=settings or {},
        )
        track(server)
        try:
            server._pg(
                "initdb",
                f"--pgdata={server.data_dir}",
                *("--username=postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"),
                *("--no-sync", "--no-instructions"),
                timeout=timeout,
            )
            write_owned(server.data_dir / "pg_hba.conf", hba_text(auth), os_user)
            with (server.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(f"\ninclude '{SETTINGS_FILE}'\n")
            server._launch(timeout, may_move_port=True)
            if password is not None:
                server.set_password("postgres", password)
        except BaseException:
            server.destroy()
            raise
        return server

    @staticmethod
    def start_replica(
        primary: PostgresServer,
        base_dir: Path,
        *,
        settings: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> PostgresReplica:
        """A new hot standby of `primary`, streaming; see PostgresReplica.create()."""
        # Imported here: the replica module builds on this one.
        from tests.support.postgres_replica import PostgresReplica  # noqa: PLC0415

        return PostgresReplica.create(primary, base_dir, settings=settings, timeout=timeout)

    # -- addresses and SQL ----------------------------------------------------------

    def url(
        self,
        driver: str = "postgresql+asyncpg",
        database: str = "postgres",
        user: str = "postgres",
        password: str | None = None,
    ) -> str:
        """SQLAlchemy URL over TCP; the password defaults to the known postgres one."""
        if password is None and user == "postgres":
            password = self.password
        secret = f":{quote(password, safe='')}" if password is not None else ""
        return f"{driver}://{quote(user, safe='')}{secret}@{self.host}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        """postgresql:// URL that asyncpg.connect() and psql both accept."""
        return self.url(driver="postgresql")

    def psql(self, sql: str, database: str = "postgres", *, timeout: float = 30.0) -> str:
        """Run `sql` through psql on our socket; unaligned tuples-only stdout.

        Raises ServerCommandError with psql's stderr when a statement fails, and
        ServerTimeoutError when the server does not answer (e.g. after sigstop()).
        """
        argv = [
            str(self.bin_dir / "psql"),
            *("--no-psqlrc", "--no-align", "--tuples-only", "--quiet", "--set=ON_ERROR_STOP=1"),
            *(f"--host={self.root}", f"--port={self.port}", "--username=postgres"),
            f"--dbname={database}",
            f"--command={sql}",
        ]
        return run(argv, timeout=timeout).stdout.rstrip("\n")

    def create_database(self, name: str) -> None:
        self.psql(f"CREATE DATABASE {_ident(name)}")

    def set_password(self, user: str, password: str) -> None:
        """Set `user`'s password (scram-sha-256, PostgreSQL's default hashing)."""
        self.psql(f"ALTER ROLE {_ident(user)} PASSWORD {sql_literal(password)}")
        if user == "postgres":
            self.password = password

    # -- lifecycle ----------------------------------------------------------------

    def is_running(self) -> bool:
        """True while the postmaster lives (also while frozen by sigstop())."""
        pid = self._postmaster_pid()
        return pid is not None and pid_alive(pid)

    @property
    def is_frozen(self) -> bool:
        return self._frozen

    def start(self, timeout: float = 60.0) -> None:
        """Start again on the same data folder and port and wait until it serves.

        No-op when already running.
        """
        if not self.is_running():
            self._launch(timeout, may_move_port=False)

    def stop(self, mode: StopMode = "fast", timeout: float = 60.0) -> None:
        """pg_ctl stop --mode=`mode`; a frozen server is thawed first so it can obey."""
        if not self.is_running():
            return
        if self._frozen:
            self.sigcont()
        self._pg_ctl("stop", f"--mode={mode}", timeout=timeout)

    def sigstop(self) -> None:
        """Freeze the postmaster and all its backends: a server that hangs rather
        than refuses. TCP connects still complete (the kernel accepts them into the
        listen backlog), then nothing answers until sigcont()."""
        signal_tree(self._require_pid(), signal.SIGSTOP)
        self._frozen = True

    def sigcont(self) -> None:
        signal_tree(self._require_pid(), signal.SIGCONT)
        self._frozen = False

    def destroy(self) -> None:
        """Immediate stop (SIGKILL if that fails) and delete the instance folder."""
        untrack(self)
        pid = self._postmaster_pid()
        if pid is not None and pid_alive(pid):
            if self._frozen:
                self.sigcont()
            self._pg_ctl("stop", "--mode=immediate", timeout=10, check=False)
            if pid_alive(pid):
                signal_tree(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} {self.root}>"

    # -- diagnostics and replica support ------------------------------------------

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server log, for error messages."""
        text = self._log_since(0).splitlines()[-lines:]
        return f"last lines of {self.log_path}:\n" + "\n".join(text)

    def flushed_wal_lsn(self) -> str:
        """Flush this primary's WAL and return the flushed position: a target every
        transaction committed so far is behind, and which a replica will reach.

        Needed when synchronous_commit=off (a settings override): a commit then only
        reaches the WAL buffers and the WAL writer flushes it (and so ships it to
        replicas) up to 200 ms later, so pg_current_wal_lsn() may be short of it and
        pg_current_wal_insert_lsn() may point past records that wait for a page to
        fill. One synchronous commit flushes everything before it; it must write WAL
        to count as one, hence the transactional logical message, which leaves no
        trace in any table.
        """
        self.psql(
            "BEGIN; SET LOCAL synchronous_commit = on;"
            " SELECT pg_logical_emit_message(true, 'bbtest', 'flush'); COMMIT"
        )
        return self.psql("SELECT pg_current_wal_flush_lsn()")

    # -- internals ------------------------------------------------------------------

    def _pg(self, tool: str, *args: str, timeout: float = 60.0, check: bool = True) -> None:
        """Run a server tool as the server's OS user, from a folder that user can enter."""
        argv = [str(self.bin_dir / tool), *args]
        run(argv, user=self.os_user, cwd=self.root, timeout=timeout, check=check)

    def _pg_ctl(self, *args: str, timeout: float, check: bool = True) -> None:
        # pg_ctl gets a whole-second deadline; our own is a little longer so that
        # pg_ctl reports the timeout itself, with its message.
        self._pg(
            "pg_ctl",
            f"--pgdata={self.data_dir}",
            "--wait",
            f"--timeout={max(1, int(timeout))}",
            *args,
            timeout=timeout + 5,
            check=check,
        )

    def _write_settings(self) -> None:
        settings = base_settings(port=self.port, socket_dir=self.root, cluster_name=self.name)
        settings.update(self._extra_settings)
        write_owned(self.data_dir / SETTINGS_FILE, settings_text(settings), self.os_user)

    def _launch(self, timeout: float, *, may_move_port: bool) -> None:
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self._write_settings()
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._pg_ctl("start", f"--log={self.log_path}", timeout=timeout)
                break
            except ServerCommandError as exc:
                new_log = self._log_since(log_start)
                if may_move_port and attempt < _PORT_ATTEMPTS and "already in use" in new_log:
                    self.port = free_port()
                    continue
                raise ServerError(f"{self.name} did not start: {exc}\n{new_log}") from exc
        isready = [
            str(self.bin_dir / "pg_isready"),
            *("--quiet", f"--host={self.root}", f"--port={self.port}"),
            *("--username=postgres", "--dbname=postgres", "--timeout=2"),
        ]
        wait_until(
            lambda: run(isready, check=False, timeout=5).returncode == 0,
            timeout=timeout,
            what=f"{self.name} to accept connections",
            details=self.log_tail,
        )
        self._wait_role_ready(timeout)

    def _wait_role_ready(self, timeout: float) -> None:
        """Hook for what a role needs beyond accepting connections (replicas stream)."""

    def _postmaster_pid(self) -> int | None:
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except (FileNotFoundError, NotADirectoryError):
            return None
        return int(first_line) if first_line.strip().isdigit() else None

    def _require_pid(self) -> int:
        pid = self._postmaster_pid()
        if pid is None or not pid_alive(pid):
            raise ServerError(f"{self.name} is not running")
        return pid

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open() as log:
                log.seek(offset)
                return log.read()
        except FileNotFoundError:
            return ""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    """`value` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
