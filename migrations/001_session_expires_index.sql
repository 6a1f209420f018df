-- Optional: an index on the sessions' expiry, so healStaleSessions deletes expired sessions straight from an
-- index range ("expires-index" strategy) instead of reading the whole table (in physical order, "tid-range",
-- on PostgreSQL 14+; in key order before). See migrations/README.md.
--
-- CONCURRENTLY: the table stays readable and writable while the index builds. It cannot run inside a
-- transaction block: run this file on its own (psql -f, or a migration tool's "no transaction" mode).
-- If the build fails it leaves an INVALID index that healStaleSessions ignores: DROP INDEX CONCURRENTLY
-- it and run this file again.

-- Prisma adapter ("Session"."expires", TIMESTAMP(3)): the name Prisma gives @@index([expires]).
CREATE INDEX CONCURRENTLY IF NOT EXISTS "Session_expires_idx" ON "Session" ("expires");

-- @auth/pg-adapter (sessions.expires, TIMESTAMPTZ): use this instead of the statement above.
-- CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_expires_idx ON sessions (expires);
