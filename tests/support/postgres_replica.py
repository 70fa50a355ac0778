"""Streaming hot-standby replicas of a private PostgreSQL primary.

What replica-routing and read-after-write tests need from a replica: that it streams
from its primary, that its replay can be paused (reads go stale while WAL still
arrives) and resumed, and a way to wait until it has caught up.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.support.postgres import PostgresServer, sql_literal
from tests.support.postgres_files import make_instance_dir
from tests.support.process import track, wait_until

__all__ = ["PostgresReplica"]


class PostgresReplica(PostgresServer):
    """A hot standby streaming from `primary`; read-only, with replay controls.

    start() after stop() also waits until the primary reports it streaming again,
    unless the primary is down or frozen (then it waits only until it serves reads).
    """

    def __init__(self, *, primary: PostgresServer, root: Path, settings: Mapping[str, str]) -> None:
        """Use create() (or PostgresServer.start_replica()); this only records things."""
        super().__init__(
            root=root,
            bin_dir=primary.bin_dir,
            os_user=primary.os_user,
            auth=primary.auth,
            # The replica is a copy of the primary, roles and passwords included.
            password=primary.password,
            settings={"hot_standby_feedback": "on", **settings},
        )
        self.primary = primary

    @classmethod
    def create(
        cls,
        primary: PostgresServer,
        base_dir: Path,
        *,
        settings: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> PostgresReplica:
        """pg_basebackup `primary` into a new folder under `base_dir`, start it as a
        hot standby and wait until the primary reports it streaming."""
        if isinstance(primary, PostgresReplica):
            raise ValueError("cascading replicas are not supported: pass a primary")
        root = make_instance_dir(base_dir, "replica", primary.os_user)
        replica = cls(primary=primary, root=root, settings=settings or {})
        track(replica)
        try:
            # The copy brings the primary's pg_hba.conf and settings include; the
            # settings file itself is rewritten with our port and socket at launch.
            replica._pg(
                "pg_basebackup",
                *(f"--host={primary.host}", f"--port={primary.port}", "--username=postgres"),
                f"--pgdata={replica.data_dir}",
                *("--write-recovery-conf", "--wal-method=stream", "--checkpoint=fast"),
                "--no-sync",
                timeout=timeout,
            )
            replica._launch(timeout, may_move_port=True)
        except BaseException:
            replica.destroy()
            raise
        return replica

    def pause_replay(self, timeout: float = 10.0) -> None:
        """Stop applying WAL (WAL still arrives): reads on this replica go stale."""
        self.psql("SELECT pg_wal_replay_pause()")
        # The request is asynchronous; return only once replay has really stopped.
        wait_until(
            lambda: self.psql("SELECT pg_get_wal_replay_pause_state()") == "paused",
            timeout=timeout,
            what=f"{self.name} to pause replay",
        )

    def resume_replay(self) -> None:
        self.psql("SELECT pg_wal_replay_resume()")

    def replay_lag_bytes(self, primary: PostgresServer | None = None) -> int:
        """Bytes of WAL the primary has committed that this replica has not replayed."""
        target = sql_literal((primary or self.primary).flushed_wal_lsn())
        diff = self.psql(f"SELECT pg_wal_lsn_diff({target}, pg_last_wal_replay_lsn())")
        # The replica may replay past `target` while we ask: that is no lag.
        return max(0, int(float(diff)))

    def wait_replay_caught_up(
        self, primary: PostgresServer | None = None, timeout: float = 30.0
    ) -> None:
        """Wait until this replica has replayed everything the primary had committed
        when called; ServerTimeoutError otherwise (for instance while paused)."""
        target = sql_literal((primary or self.primary).flushed_wal_lsn())
        wait_until(
            lambda: self.psql(f"SELECT pg_last_wal_replay_lsn() >= {target}::pg_lsn") == "t",
            timeout=timeout,
            what=f"{self.name} to replay up to {target}",
        )

    def _wait_role_ready(self, timeout: float) -> None:
        wait_until(
            lambda: self.psql("SELECT pg_is_in_recovery()") == "t",
            timeout=timeout,
            what=f"{self.name} to run as a hot standby",
            details=self.log_tail,
        )
        primary = self.primary
        if not primary.is_running() or primary.is_frozen:
            return
        # cluster_name is the walreceiver's application_name (postgres_files).
        streaming = (
            "SELECT count(*) FROM pg_stat_replication"  # noqa: S608 -- literal is quoted
            f" WHERE application_name = {sql_literal(self.name)} AND state = 'streaming'"
        )
        wait_until(
            lambda: primary.psql(streaming) == "1",
            timeout=timeout,
            what=f"{primary.name} to stream to {self.name}",
            details=self.log_tail,
        )
