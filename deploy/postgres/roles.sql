-- Roles for a Confide database. Run once per cluster as a superuser, e.g.
--   psql -v owner_password=... -v app_password=... -f deploy/postgres/roles.sql
-- then run migrations as confide_owner (`CONFIDE_DATABASE_URL=postgresql://confide_owner@.../confide
-- confide migrate`), then grant the application role its least privileges:
--   psql -c "SELECT confide_grant_app_role('confide_app')"
-- and point the service at postgresql://confide_app@.../confide.

CREATE ROLE confide_owner LOGIN PASSWORD :'owner_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE confide_app LOGIN PASSWORD :'app_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
CREATE DATABASE confide OWNER confide_owner;
\connect confide
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT ALL ON SCHEMA public TO confide_owner;
