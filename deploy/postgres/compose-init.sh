#!/bin/sh
# First start of the compose stack's PostgreSQL: create the migration owner, the
# application role and the database (deploy/postgres/roles.sql).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v owner_password="$CONFIDE_OWNER_PASSWORD" \
    -v app_password="$CONFIDE_APP_PASSWORD" \
    -f /confide/roles.sql
