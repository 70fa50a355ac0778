#!/bin/sh
# Entry point of the streaming hot standby. On first start (empty data directory) it clones
# the primary with pg_basebackup -R (which writes standby.signal and primary_conninfo), then
# hands over to the image's own entry point, which finds an initialised directory and starts
# PostgreSQL as a read-only standby. Later starts skip the clone.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_HOST:=postgres}"
: "${PRIMARY_PORT:=5432}"
: "${POSTGRES_REPLICATION_USER:=replicator}"
: "${POSTGRES_REPLICATION_PASSWORD:?POSTGRES_REPLICATION_PASSWORD must be set}"
: "${POSTGRES_REPLICATION_SLOT:=replica_1}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "replica: cloning ${PRIMARY_HOST}:${PRIMARY_PORT} into ${PGDATA}"
    until pg_isready --host="$PRIMARY_HOST" --port="$PRIMARY_PORT" --quiet; do
        echo "replica: waiting for the primary"
        sleep 1
    done
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    # su-exec ships with the alpine image; the clone must be owned by postgres.
    PGPASSWORD="$POSTGRES_REPLICATION_PASSWORD" su-exec postgres pg_basebackup \
        --host="$PRIMARY_HOST" --port="$PRIMARY_PORT" \
        --username="$POSTGRES_REPLICATION_USER" \
        --pgdata="$PGDATA" \
        --wal-method=stream --slot="$POSTGRES_REPLICATION_SLOT" \
        --write-recovery-conf --checkpoint=fast --progress --no-password
fi

exec docker-entrypoint.sh "$@"
