"""The Auth.js (NextAuth) adapters' documented PostgreSQL schemas, for the heal routines' tests and tools.

* :func:`create_prisma_schema`: the Prisma adapter's models as its docs give them today (``User`` with
  ``email`` required and unique; ``Account`` keyed by ``(provider, providerAccountId)``; ``Session`` without
  an ``id``, only a unique ``sessionToken``; ``VerificationToken`` keyed by ``(identifier, token)``; the
  optional WebAuthn ``Authenticator`` keyed by ``(userId, credentialID)``; ``createdAt``/``updatedAt`` on
  ``User``, ``Account`` and ``Session``) as ``prisma migrate`` writes them: ``TEXT`` ids, ``TIMESTAMP(3)``
  dates (UTC), ``updatedAt`` without a default (Prisma sets it), indexes named ``<Model>_<fields>_key``,
  foreign keys ``ON DELETE CASCADE ON UPDATE CASCADE``. With ``foreign_keys=False`` it is the
  ``relationMode = "prisma"`` variant: no constraints (rows deleted outside Prisma leave orphans) and the
  ``@@index([userId])`` Prisma asks for.
* :func:`create_kysely_schema`: the Kysely adapter's documented migration (the same table names, ``uuid`` ids,
  ``timestamptz``, ``VerificationToken`` with only a unique ``token``, no ``Authenticator``).
* :func:`create_pg_adapter_schema`: the tables of @auth/pg-adapter's docs (``SERIAL`` ids, ``TIMESTAMPTZ``,
  no foreign keys).
* :func:`create_drizzle_schema`: the Drizzle adapter's pg-core default tables as ``drizzle-kit`` creates
  them (``user``, ``account``, ``session``, ``verificationToken``, ``authenticator``; ``timestamp`` without
  time zone, holding UTC; foreign keys ``ON DELETE cascade``).

``schema`` creates the tables in that PostgreSQL schema (created if missing) instead of ``public``.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

PRISMA_TABLES = """
CREATE TABLE "User" (
    "id" TEXT NOT NULL,
    "name" TEXT,
    "email" TEXT NOT NULL,
    "emailVerified" TIMESTAMP(3),
    "image" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "Account" (
    "userId" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "provider" TEXT NOT NULL,
    "providerAccountId" TEXT NOT NULL,
    "refresh_token" TEXT,
    "access_token" TEXT,
    "expires_at" INTEGER,
    "token_type" TEXT,
    "scope" TEXT,
    "id_token" TEXT,
    "session_state" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Account_pkey" PRIMARY KEY ("provider","providerAccountId")
);
CREATE TABLE "Session" (
    "sessionToken" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "expires" TIMESTAMP(3) NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL
);
CREATE TABLE "VerificationToken" (
    "identifier" TEXT NOT NULL,
    "token" TEXT NOT NULL,
    "expires" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "VerificationToken_pkey" PRIMARY KEY ("identifier","token")
);
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");
CREATE UNIQUE INDEX "Session_sessionToken_key" ON "Session"("sessionToken");
"""
PRISMA_AUTHENTICATOR = """
CREATE TABLE "Authenticator" (
    "credentialID" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "providerAccountId" TEXT NOT NULL,
    "credentialPublicKey" TEXT NOT NULL,
    "counter" INTEGER NOT NULL,
    "credentialDeviceType" TEXT NOT NULL,
    "credentialBackedUp" BOOLEAN NOT NULL,
    "transports" TEXT,

    CONSTRAINT "Authenticator_pkey" PRIMARY KEY ("userId","credentialID")
);
CREATE UNIQUE INDEX "Authenticator_credentialID_key" ON "Authenticator"("credentialID");
"""
PRISMA_FOREIGN_KEY = (
    'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_userId_fkey" FOREIGN KEY ("userId") '
    'REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE;'
)
PRISMA_RELATION_INDEX = 'CREATE INDEX "{table}_userId_idx" ON "{table}"("userId");'

KYSELY_TABLES = """
CREATE TABLE "User" (
  "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  "name" text,
  "email" text UNIQUE NOT NULL,
  "emailVerified" timestamptz,
  "image" text
);
CREATE TABLE "Account" (
  "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  "userId" uuid REFERENCES "User" ("id") ON DELETE CASCADE NOT NULL,
  "type" text NOT NULL,
  "provider" text NOT NULL,
  "providerAccountId" text NOT NULL,
  "refresh_token" text,
  "access_token" text,
  "expires_at" bigint,
  "token_type" text,
  "scope" text,
  "id_token" text,
  "session_state" text
);
CREATE TABLE "Session" (
  "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  "userId" uuid REFERENCES "User" ("id") ON DELETE CASCADE NOT NULL,
  "sessionToken" text NOT NULL UNIQUE,
  "expires" timestamptz NOT NULL
);
CREATE TABLE "VerificationToken" (
  "identifier" text NOT NULL,
  "token" text NOT NULL UNIQUE,
  "expires" timestamptz NOT NULL
);
CREATE INDEX "Account_userId_index" ON "Account" ("userId");
CREATE INDEX "Session_userId_index" ON "Session" ("userId");
"""

PG_ADAPTER_TABLES = """
CREATE TABLE verification_token
(
  identifier TEXT NOT NULL,
  expires TIMESTAMPTZ NOT NULL,
  token TEXT NOT NULL,

  PRIMARY KEY (identifier, token)
);
CREATE TABLE accounts
(
  id SERIAL,
  "userId" INTEGER NOT NULL,
  type VARCHAR(255) NOT NULL,
  provider VARCHAR(255) NOT NULL,
  "providerAccountId" VARCHAR(255) NOT NULL,
  refresh_token TEXT,
  access_token TEXT,
  expires_at BIGINT,
  id_token TEXT,
  scope TEXT,
  session_state TEXT,
  token_type TEXT,

  PRIMARY KEY (id)
);
CREATE TABLE sessions
(
  id SERIAL,
  "userId" INTEGER NOT NULL,
  expires TIMESTAMPTZ NOT NULL,
  "sessionToken" VARCHAR(255) NOT NULL,

  PRIMARY KEY (id)
);
CREATE TABLE users
(
  id SERIAL,
  name VARCHAR(255),
  email VARCHAR(255),
  "emailVerified" TIMESTAMPTZ,
  image TEXT,

  PRIMARY KEY (id)
);
"""

DRIZZLE_TABLES = """
CREATE TABLE "account" (
  "userId" text NOT NULL,
  "type" text NOT NULL,
  "provider" text NOT NULL,
  "providerAccountId" text NOT NULL,
  "refresh_token" text,
  "access_token" text,
  "expires_at" integer,
  "token_type" text,
  "scope" text,
  "id_token" text,
  "session_state" text,
  CONSTRAINT "account_provider_providerAccountId_pk" PRIMARY KEY("provider","providerAccountId")
);
CREATE TABLE "authenticator" (
  "credentialID" text NOT NULL,
  "userId" text NOT NULL,
  "providerAccountId" text NOT NULL,
  "credentialPublicKey" text NOT NULL,
  "counter" integer NOT NULL,
  "credentialDeviceType" text NOT NULL,
  "credentialBackedUp" boolean NOT NULL,
  "transports" text,
  CONSTRAINT "authenticator_userId_credentialID_pk" PRIMARY KEY("userId","credentialID"),
  CONSTRAINT "authenticator_credentialID_unique" UNIQUE("credentialID")
);
CREATE TABLE "session" (
  "sessionToken" text PRIMARY KEY NOT NULL,
  "userId" text NOT NULL,
  "expires" timestamp NOT NULL
);
CREATE TABLE "user" (
  "id" text PRIMARY KEY NOT NULL,
  "name" text,
  "email" text,
  "emailVerified" timestamp,
  "image" text,
  CONSTRAINT "user_email_unique" UNIQUE("email")
);
CREATE TABLE "verificationToken" (
  "identifier" text NOT NULL,
  "token" text NOT NULL,
  "expires" timestamp NOT NULL,
  CONSTRAINT "verificationToken_identifier_token_pk" PRIMARY KEY("identifier","token")
);
ALTER TABLE "account" ADD CONSTRAINT "account_userId_user_id_fk" FOREIGN KEY ("userId")
  REFERENCES "user"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "authenticator" ADD CONSTRAINT "authenticator_userId_user_id_fk" FOREIGN KEY ("userId")
  REFERENCES "user"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "session" ADD CONSTRAINT "session_userId_user_id_fk" FOREIGN KEY ("userId")
  REFERENCES "user"("id") ON DELETE cascade ON UPDATE no action;
"""


def _create(conn: psycopg.Connection, statements: str, schema: str | None) -> None:
    with conn.transaction():
        if schema is not None:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(statements)


def create_prisma_schema(
    conn: psycopg.Connection, foreign_keys: bool = True, authenticator: bool = True, schema: str | None = None
) -> None:
    """The Prisma adapter's tables; ``authenticator=False`` leaves out the optional WebAuthn model."""
    children = ["Account", "Session", *(["Authenticator"] if authenticator else [])]
    statements = [PRISMA_TABLES, PRISMA_AUTHENTICATOR if authenticator else ""]
    if foreign_keys:
        statements += [PRISMA_FOREIGN_KEY.format(table=table) for table in children]
    else:  # Authenticator's primary key already leads with userId
        statements += [PRISMA_RELATION_INDEX.format(table=table) for table in ("Account", "Session")]
    _create(conn, "\n".join(statements), schema)


def create_kysely_schema(conn: psycopg.Connection, schema: str | None = None) -> None:
    _create(conn, KYSELY_TABLES, schema)


def create_pg_adapter_schema(conn: psycopg.Connection, schema: str | None = None) -> None:
    _create(conn, PG_ADAPTER_TABLES, schema)


def create_drizzle_schema(conn: psycopg.Connection, schema: str | None = None) -> None:
    _create(conn, DRIZZLE_TABLES, schema)


# Session tokens generated from a row number ``i`` as the Prisma schema's defaults make them.
TOKEN_ORDERS = {
    "cuid()": "'c' || lpad(to_hex(i), 8, '0') || substr(md5(i::text), 1, 16)",  # time-ordered
    "uuid()": "md5(i::text)::uuid::text",  # random order
}
_LOAD_SESSIONS = """
INSERT INTO "Session" ("sessionToken", "userId", expires, "updatedAt")
SELECT {token}, 'user-' || (i % 50000),
       (now() AT TIME ZONE 'UTC') + CASE WHEN i <= {expired}
           THEN -interval '1 hour' - ({expired} - i) * interval '1 second'
           ELSE interval '1 hour' + (i - {expired}) * interval '1 second' END,
       now() AT TIME ZONE 'UTC'
FROM generate_series(1, {sessions}) AS i
"""


def load_prisma_sessions(conn: psycopg.Connection, sessions: int, expired: int, token_order: str) -> None:
    """``sessions`` rows in the official Prisma ``"Session"`` table, created in token order over time: the
    first ``expired`` expired an hour ago or earlier, the rest are live (benchmarks and load tests)."""
    conn.execute(
        sql.SQL(_LOAD_SESSIONS).format(
            token=sql.SQL(TOKEN_ORDERS[token_order]), expired=sql.Literal(expired), sessions=sql.Literal(sessions)
        )
    )
