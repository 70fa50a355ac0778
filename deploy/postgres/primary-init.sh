#!/bin/sh
# Runs once, from /docker-entrypoint-initdb.d/, when the primary's data directory is created:
# a replication role, a physical replication slot for the standby (so the primary keeps the
# WAL the standby still needs), and a pg_hba rule that lets the role stream.
set -eu

: "${POSTGRES_REPLICATION_USER:=replicator}"
: "${POSTGRES_REPLICATION_PASSWORD:?POSTGRES_REPLICATION_PASSWORD must be set}"
: "${POSTGRES_REPLICATION_SLOT:=replica_1}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=user="$POSTGRES_REPLICATION_USER" \
    --set=password="$POSTGRES_REPLICATION_PASSWORD" \
    --set=slot="$POSTGRES_REPLICATION_SLOT" <<'SQL'
CREATE ROLE :"user" WITH REPLICATION LOGIN PASSWORD :'password';
SELECT pg_create_physical_replication_slot(:'slot');
SQL

echo "host replication ${POSTGRES_REPLICATION_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
