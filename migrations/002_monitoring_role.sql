-- The read-only monitoring role of the public health routes and the health sweep (HealthDbFunction,
-- HealthFunction, MonitorFunction): it logs in, connects to this database, reads pg_stat_activity with
-- every backend's state (pg_monitor) and can write nothing. See migrations/README.md.
--
-- psql only (it uses psql variables and \gexec). Connect as the database's owner or an admin role (RDS: the
-- master user) to the app's database, the one the monitoring URL will name:
--
--   psql "$ADMIN_DATABASE_URL" -v ON_ERROR_STOP=1 -v monitor_role=parel_monitor -v connection_limit=10 \
--        -f migrations/002_monitoring_role.sql
--
-- Both variables are optional (defaults below). Rerunning it is safe: it creates the role only when missing
-- and sets the connection limit and the grants again. It sets no password: see the README (\password).

\set ON_ERROR_STOP on
\if :{?monitor_role}
\else
  \set monitor_role parel_monitor
\endif
\if :{?connection_limit}
\else
  \set connection_limit 10
\endif

-- Created with no attribute beyond LOGIN (no superuser, createdb, createrole, replication or bypassrls).
SELECT format('CREATE ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS '
              'INHERIT CONNECTION LIMIT %s', :'monitor_role', (:'connection_limit')::int)
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'monitor_role') \gexec

-- At most this many sessions at once (each warm execution environment of the three functions holds one):
-- at least the sum of their reserved concurrency, see migrations/README.md.
ALTER ROLE :"monitor_role" WITH LOGIN CONNECTION LIMIT :connection_limit;

-- Every backend's state in pg_stat_activity (without it other roles' sessions count in the pool's total
-- but show no state), and max_connections. pg_monitor grants reading statistics and settings only.
GRANT pg_monitor TO :"monitor_role";

-- This database only (psql sets DBNAME to the database it is connected to).
GRANT CONNECT ON DATABASE :"DBNAME" TO :"monitor_role";

-- Belts and braces: its sessions start read-only and cannot hang on to the server.
ALTER ROLE :"monitor_role" SET default_transaction_read_only = on;
ALTER ROLE :"monitor_role" SET statement_timeout = '5s';
ALTER ROLE :"monitor_role" SET idle_in_transaction_session_timeout = '10s';
-- The backend of an execution environment Lambda froze or retired is closed after 10 idle minutes (a thawed
-- environment reconnects on its next check); PostgreSQL 14 and later.
SELECT current_setting('server_version_num')::int >= 140000 AS has_idle_session_timeout \gset
\if :has_idle_session_timeout
  ALTER ROLE :"monitor_role" SET idle_session_timeout = '10min';
\endif

-- Refuse a role that can do more than that (an existing role reused, a grant to it, or write rights that
-- reach it through PUBLIC): nothing above is undone, but the run fails and says why.
SELECT coalesce(string_agg(problem, '; '), '') AS monitor_role_problems,
       count(*) > 0 AS monitor_role_has_problems
FROM (
    SELECT 'attribute ' || a.attribute AS problem
    FROM pg_roles r,
         LATERAL (VALUES ('SUPERUSER', r.rolsuper), ('CREATEDB', r.rolcreatedb), ('CREATEROLE', r.rolcreaterole),
                         ('REPLICATION', r.rolreplication), ('BYPASSRLS', r.rolbypassrls)) AS a(attribute, has)
    WHERE r.rolname = :'monitor_role' AND a.has
    UNION ALL
    SELECT 'member of ' || m.roleid::regrole::text
    FROM pg_auth_members m
    WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = :'monitor_role')
      AND m.roleid <> 'pg_monitor'::regrole
    UNION ALL
    SELECT 'can write ' || c.oid::regclass::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
      AND ((c.relkind IN ('r', 'p', 'v', 'f')
            AND has_table_privilege(:'monitor_role', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))
           OR (c.relkind = 'S' AND has_sequence_privilege(:'monitor_role', c.oid, 'USAGE, UPDATE')))
) AS problems \gset

-- Not fatal: on PostgreSQL 14 and older every role (PUBLIC) may create tables in schema public.
SELECT coalesce(string_agg(quote_ident(n.nspname), ', '), '') AS monitor_role_create_schemas,
       count(*) > 0 AS monitor_role_can_create
FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
  AND has_schema_privilege(:'monitor_role', n.oid, 'CREATE') \gset
\if :monitor_role_can_create
  \echo 'warning: the monitoring role can create tables in' :'monitor_role_create_schemas' '(through PUBLIC);'
  \echo 'PostgreSQL 15 no longer allows that by default: REVOKE CREATE ON SCHEMA public FROM PUBLIC does the same'
\endif

\if :monitor_role_has_problems
  \echo 'monitoring role' :"monitor_role" 'has more rights than it needs:' :'monitor_role_problems'
  \echo 'revoke them (or choose another role name) and run this file again'
  SELECT 1 / 0 AS monitoring_role_is_not_read_only;
\else
  \echo 'monitoring role' :"monitor_role" 'ready: LOGIN, CONNECTION LIMIT' :connection_limit', pg_monitor, CONNECT on' :"DBNAME"
\endif
