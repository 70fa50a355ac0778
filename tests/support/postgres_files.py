"""Where a private PostgreSQL instance lives on disk and what its config files say.

Kept apart from the server class: this is the part that knows Debian's layout
(/usr/lib/postgresql/<major>/bin), the OS user that must own a data directory, and the
unix-socket path limit that decides where an instance folder may go.
"""

from __future__ import annotations

import os
import pwd
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from tests.support.errors import ServiceUnavailable
from tests.support.process import INSTALL_HINT, run

__all__ = [
    "AuthMode",
    "base_settings",
    "hba_text",
    "make_instance_dir",
    "postgres_bin_dir",
    "server_os_user",
    "settings_text",
    "write_owned",
]

AuthMode = Literal["trust", "scram"]

APT_LINE = "apt-get install -y postgresql"
# Our settings live in a file of their own that postgresql.conf includes last, so a
# replica (whose pg_basebackup copies the primary's files) just rewrites that one file.
SETTINGS_FILE = "bbtest.conf"
# A unix socket path holds at most 107 bytes; ".s.PGSQL.65535.lock" is the longest
# name PostgreSQL puts in the socket folder.
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535.lock")


def postgres_bin_dir(search_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The newest <search_root>/<major>/bin that has the server tools (Debian layout)."""
    candidates = [p for p in search_root.glob("*/bin") if (p / "initdb").exists()]
    if not candidates:
        raise ServiceUnavailable(
            f"initdb/pg_ctl/pg_basebackup not found under {search_root}/*/bin; "
            f"install them with: {APT_LINE} ({INSTALL_HINT})"
        )

    def major(path: Path) -> tuple[int, ...]:
        name = path.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    return max(candidates, key=major)


def server_os_user() -> str:
    """The OS user the servers run as: `postgres` when we are root, else ourselves.

    initdb and postgres refuse to run as root.
    """
    if os.geteuid() == 0:
        return "postgres"
    return pwd.getpwuid(os.geteuid()).pw_name


def make_instance_dir(base_dir: Path, role: str, os_user: str) -> Path:
    """Create a fresh folder for one instance, owned by `os_user`.

    It goes under `base_dir` when `os_user` can reach it and the socket path stays
    short enough; otherwise under the system temp folder. As root that is the usual
    case: pytest's tmp_path sits under a 0700 folder the postgres user cannot enter.
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    parent = base_dir if _usable_parent(base_dir, os_user) else Path(tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix=f"bbtest-pg-{role}-", dir=parent))
    _chown(root, os_user)
    return root


def _usable_parent(base_dir: Path, os_user: str) -> bool:
    longest_root = base_dir / "bbtest-pg-replica-xxxxxxxx"
    if len(str(longest_root.absolute())) > _MAX_SOCKET_DIR:
        return False
    if os.geteuid() != 0 or os_user == "root":
        return True
    return run(["test", "-x", str(base_dir)], user=os_user, check=False).returncode == 0


def _chown(path: Path, os_user: str) -> None:
    if os.geteuid() == 0 and os_user != "root":
        entry = pwd.getpwnam(os_user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def write_owned(path: Path, text: str, os_user: str) -> None:
    """Write a config file that the server (running as `os_user`) must be able to read."""
    path.write_text(text)
    _chown(path, os_user)


def hba_text(auth: AuthMode) -> str:
    """pg_hba.conf: the socket is always trusted, TCP follows `auth`.

    The helpers themselves talk over the socket so they work in both modes, and
    replication over TCP stays trusted so that a replica of a password-protected
    primary needs no password file.
    """
    tcp_method = "scram-sha-256" if auth == "scram" else "trust"
    return (
        "# written by tests/support: private throw-away test instance\n"
        "local   all          all                   trust\n"
        "local   replication  all                   trust\n"
        "host    replication  all    127.0.0.1/32   trust\n"
        f"host    all          all    127.0.0.1/32   {tcp_method}\n"
    )


def settings_text(settings: Mapping[str, str]) -> str:
    """Render settings as `name = 'value'` lines (PostgreSQL accepts any value quoted)."""
    lines = [
        f"{name} = '{value.replace(chr(39), chr(39) * 2)}'" for name, value in settings.items()
    ]
    return "# written by tests/support; rewritten on every port change\n" + "\n".join(lines) + "\n"


def base_settings(*, port: int, socket_dir: Path, cluster_name: str) -> dict[str, str]:
    """Settings every instance gets; speed over durability, since it is thrown away."""
    return {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        # Our own socket folder: the system server owns /var/run/postgresql.
        "unix_socket_directories": str(socket_dir),
        # Names the processes in `ps` and is the replica's application_name, by which
        # the primary's pg_stat_replication tells us it is streaming.
        "cluster_name": cluster_name,
        "wal_level": "replica",
        "max_wal_senders": "10",
        "max_replication_slots": "10",
        # A replica stopped for a test must find the WAL it missed on the primary.
        "wal_keep_size": "256MB",
        "hot_standby": "on",
        # The default 5 s between a replica's reconnect attempts would slow fault tests.
        "wal_retrieve_retry_interval": "200ms",
        "max_connections": "200",
        # No durability against an OS crash: the folder does not outlive the run.
        "fsync": "off",
        "full_page_writes": "off",
        # But commits survive a server crash: with synchronous_commit=off, stop
        # ("immediate") or SIGKILL silently drops the last ~200 ms of acknowledged
        # commits, which fault tests would read as application bugs. With fsync off,
        # keeping it on costs ~8% of pgbench TPS here.
        "synchronous_commit": "on",
        "shared_buffers": "128MB",
    }
