"""Self-tests of the private-server helpers: each starts real servers and pins one
behaviour the integration and fault tests rely on."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.errors import ServerTimeoutError, ServiceUnavailable
from tests.support.mariadb import mariadb_available, mariadb_temp_database
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.postgres_files import postgres_bin_dir
from tests.support.postgres_replica import PostgresReplica
from tests.support.process import require_binary, run
from tests.support.pytest_helpers import skip_or_fail, started
from tests.support.redis import RedisServer

# The first message of a PostgreSQL connection that asks for TLS; any live server
# answers it with one byte (N or S) before any authentication.
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[PostgresServer]:
    server = started(lambda: PostgresServer.start_primary(tmp_path))
    with server:
        yield server


@pytest.fixture
def replica(primary: PostgresServer, tmp_path: Path) -> Iterator[PostgresReplica]:
    with PostgresServer.start_replica(primary, tmp_path) as server:
        yield server


@pytest.fixture
def fresh_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = started(lambda: RedisServer.start_new(tmp_path))
    with server:
        yield server


def _psql_over_tcp(url: str) -> subprocess.CompletedProcess[str]:
    return run([str(postgres_bin_dir() / "psql"), url, "-XAtc", "SELECT 1"], check=False)


def test_free_port_is_bindable_and_not_handed_out_twice() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", ports[0]))


def test_missing_binary_error_names_the_apt_line() -> None:
    with pytest.raises(ServiceUnavailable, match="apt-get install -y some-package"):
        require_binary("bbtest-no-such-binary", "some-package")


def test_missing_postgres_error_names_the_apt_line(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnavailable, match="apt-get install -y postgresql"):
        postgres_bin_dir(tmp_path)


def test_newest_postgres_major_is_chosen(tmp_path: Path) -> None:
    for major in ("9.6", "15", "16"):
        (tmp_path / major / "bin").mkdir(parents=True)
        (tmp_path / major / "bin" / "initdb").touch()
    assert postgres_bin_dir(tmp_path) == tmp_path / "16" / "bin"


def test_skip_or_fail_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail(ServiceUnavailable("no redis"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no redis"):
        skip_or_fail(ServiceUnavailable("no redis"))


@pytest.mark.postgres
def test_replica_serves_rows_committed_on_the_primary(
    primary: PostgresServer, replica: PostgresReplica
) -> None:
    primary.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
    replica.wait_replay_caught_up()
    assert replica.psql("SELECT x FROM t") == "1"
    assert replica.psql("SELECT pg_is_in_recovery()") == "t"
    assert replica.url().startswith(f"postgresql+asyncpg://postgres@127.0.0.1:{replica.port}/")
    assert _psql_over_tcp(primary.dsn).stdout.strip() == "1"


@pytest.mark.postgres
def test_paused_replay_hides_new_rows_until_resumed(
    primary: PostgresServer, replica: PostgresReplica
) -> None:
    primary.psql("CREATE TABLE t (x int)")
    replica.wait_replay_caught_up()
    replica.pause_replay()
    primary.psql("INSERT INTO t VALUES (1)")
    assert replica.replay_lag_bytes() > 0
    with pytest.raises(ServerTimeoutError):
        replica.wait_replay_caught_up(timeout=0.3)
    assert replica.psql("SELECT count(*) FROM t") == "0"
    replica.resume_replay()
    replica.wait_replay_caught_up()
    assert replica.psql("SELECT count(*) FROM t") == "1"
    assert replica.replay_lag_bytes() == 0


@pytest.mark.postgres
def test_stopped_replica_restarts_on_its_port_and_catches_up(
    primary: PostgresServer, replica: PostgresReplica
) -> None:
    port = replica.port
    replica.stop()
    assert not replica.is_running()
    primary.psql("CREATE TABLE t AS SELECT 7 AS x")
    replica.start()
    replica.wait_replay_caught_up()
    assert replica.port == port
    assert replica.psql("SELECT x FROM t") == "7"


@pytest.mark.postgres
def test_sigstopped_primary_accepts_tcp_but_answers_only_after_sigcont(
    primary: PostgresServer,
) -> None:
    primary.sigstop()
    try:
        with socket.create_connection((primary.host, primary.port), timeout=2) as conn:
            conn.sendall(_SSL_REQUEST)
            conn.settimeout(0.3)
            with pytest.raises(TimeoutError):
                conn.recv(1)
            primary.sigcont()
            conn.settimeout(5)
            assert conn.recv(1) in (b"N", b"S")
    finally:
        primary.sigcont()
    assert primary.psql("SELECT 1") == "1"


@pytest.mark.postgres
def test_scram_primary_rejects_a_wrong_password_at_once(tmp_path: Path) -> None:
    server = started(
        lambda: PostgresServer.start_primary(tmp_path, auth="scram", password="right pw")
    )
    with server:
        began = time.monotonic()
        wrong = _psql_over_tcp(server.url(driver="postgresql", password="wrong"))
        assert wrong.returncode != 0
        assert "password authentication failed" in wrong.stderr
        assert time.monotonic() - began < 2
        assert _psql_over_tcp(server.dsn).stdout.strip() == "1"


@pytest.mark.postgres
def test_destroy_stops_the_server_and_removes_its_folder(primary: PostgresServer) -> None:
    primary.destroy()
    assert not primary.is_running()
    assert not primary.root.exists()


@pytest.mark.redis
def test_killed_redis_restarts_on_the_same_port_empty(fresh_redis: RedisServer) -> None:
    fresh_redis.cli("SET", "k", "v")
    port = fresh_redis.port
    fresh_redis.kill()
    assert not fresh_redis.ping()
    fresh_redis.start()
    assert fresh_redis.port == port
    assert fresh_redis.cli("EXISTS", "k") == "0"


@pytest.mark.redis
def test_paused_redis_stops_answering_until_resumed(fresh_redis: RedisServer) -> None:
    fresh_redis.pause()
    try:
        assert not fresh_redis.ping()
    finally:
        fresh_redis.resume()
    assert fresh_redis.ping()


@pytest.mark.redis
def test_redis_with_password_refuses_clients_without_it(tmp_path: Path) -> None:
    server = started(lambda: RedisServer.start_new(tmp_path, password="pw"))
    with server:
        assert server.url == f"redis://:pw@127.0.0.1:{server.port}/0"
        assert server.cli("PING") == "PONG"
        anonymous = run(["redis-cli", "-p", str(server.port), "PING"]).stdout
        assert anonymous.startswith("NOAUTH")


@pytest.mark.mariadb
def test_mariadb_temp_database_is_utf8mb4_and_dropped_afterwards() -> None:
    if not mariadb_available():
        skip_or_fail(ServiceUnavailable("MariaDB is not answering on 127.0.0.1:3306"))
    schema_query = (
        "SELECT default_character_set_name FROM information_schema.schemata"
        " WHERE schema_name = '{}'"
    )
    with mariadb_temp_database() as url:
        assert url.startswith("mysql+aiomysql://root@127.0.0.1:3306/bbtest_")
        name = url.rsplit("/", 1)[1]
        client = ["mariadb", "--no-defaults", "-h127.0.0.1", "-uroot", "-N", "-e"]
        assert run([*client, schema_query.format(name)]).stdout.strip() == "utf8mb4"
    assert run([*client, schema_query.format(name)]).stdout.strip() == ""
