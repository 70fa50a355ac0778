#!/bin/sh
# Container healthcheck: the server accepts connections and is in the expected role
# (EXPECT_RECOVERY=t for the standby, f for the primary).
set -eu
pg_isready --username="$POSTGRES_USER" --dbname="$POSTGRES_DB" --quiet
in_recovery=$(psql --username="$POSTGRES_USER" --dbname="$POSTGRES_DB" --no-align --tuples-only \
    --command="SELECT pg_is_in_recovery()")
[ "$in_recovery" = "${EXPECT_RECOVERY:-f}" ]
