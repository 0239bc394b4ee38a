-- Roles and database for Confide. Run once per cluster as a superuser, or as a managed
-- service's administrator (a role with CREATEROLE and CREATEDB):
--
--   psql -v ON_ERROR_STOP=1 -v owner_password=... -v app_password=... -f deploy/postgres/roles.sql
--
-- Optional variables: owner_role (default confide_owner), app_role (confide_app),
-- database (confide). Then migrate as the owner and grant the application role its
-- privileges in one step:
--
--   CONFIDE_DATABASE_URL=postgresql://confide_owner:...@db/confide confide migrate --grant-app-role confide_app
--
-- (the same as `confide migrate` followed by `SELECT confide_grant_app_role('confide_app')`
-- as the owner), and point the service at postgresql://confide_app:...@db/confide.
--
-- confide_owner (migration owner): owns the database, the schema and every table the
--   migrations create; no superuser, cannot create databases or roles, cannot bypass
--   row-level security, no replication.
-- confide_app (the service): owns nothing and can create nothing (no CREATE on the
--   schema, no temporary tables); migration 0008's confide_grant_app_role gives it
--   INSERT and SELECT only on the append-only tables (the audit log among them; the
--   one exception is the documented column grant that lets retention prune an
--   integrated audit event's leaf bytes), SELECT/INSERT/UPDATE/DELETE on the tables it
--   changes in place, and TRUNCATE, REFERENCES and TRIGGER on nothing. Re-run the grant
--   after every migration (the migrate command above does).
-- tests/integration/test_roles_sql.py runs this file and checks all of the above.

\set ON_ERROR_STOP on
\if :{?owner_role}
\else
  \set owner_role confide_owner
\endif
\if :{?app_role}
\else
  \set app_role confide_app
\endif
\if :{?database}
\else
  \set database confide
\endif

CREATE ROLE :"owner_role" LOGIN PASSWORD :'owner_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
CREATE ROLE :"app_role" LOGIN PASSWORD :'app_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
CREATE DATABASE :"database" OWNER :"owner_role";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"database" TO :"owner_role";
GRANT CONNECT ON DATABASE :"database" TO :"app_role";

\connect :"database"
-- Only the owner creates objects; the application role gets USAGE from the grant function.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT ALL ON SCHEMA public TO :"owner_role";
