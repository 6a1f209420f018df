"""The NextAuth (Auth.js) database schemas the heal routines work on, and helpers for their tests.

* :func:`create_prisma_schema`: the Prisma adapter's models (``User``, ``Account``, ``Session`` with an ``id``,
  ``VerificationToken`` with ``@@unique([identifier, token])``, the WebAuthn ``Authenticator``) as
  ``prisma migrate`` writes them for PostgreSQL: ``TEXT`` ids, ``TIMESTAMP(3)`` dates (UTC), unique indexes
  named ``<Model>_<fields>_key``, foreign keys ``ON DELETE CASCADE ON UPDATE CASCADE``. With
  ``foreign_keys=False`` it is the ``relationMode = "prisma"`` variant: no constraints (Prisma emulates the
  relations, so rows deleted outside Prisma leave orphans) and the ``@@index([userId])`` the docs ask for.
* :func:`create_pg_adapter_schema`: the tables of @auth/pg-adapter's README (``SERIAL`` ids, ``TIMESTAMPTZ``,
  no foreign keys).
"""

from __future__ import annotations

import psycopg

PRISMA_TABLES = """
CREATE TABLE "User" (
    "id" TEXT NOT NULL,
    "name" TEXT,
    "email" TEXT,
    "emailVerified" TIMESTAMP(3),
    "image" TEXT,

    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "Account" (
    "id" TEXT NOT NULL,
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

    CONSTRAINT "Account_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "Session" (
    "id" TEXT NOT NULL,
    "sessionToken" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "expires" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Session_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "VerificationToken" (
    "identifier" TEXT NOT NULL,
    "token" TEXT NOT NULL,
    "expires" TIMESTAMP(3) NOT NULL
);
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");
CREATE UNIQUE INDEX "Account_provider_providerAccountId_key" ON "Account"("provider", "providerAccountId");
CREATE UNIQUE INDEX "Session_sessionToken_key" ON "Session"("sessionToken");
CREATE UNIQUE INDEX "VerificationToken_token_key" ON "VerificationToken"("token");
CREATE UNIQUE INDEX "VerificationToken_identifier_token_key" ON "VerificationToken"("identifier", "token");
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


def create_prisma_schema(conn: psycopg.Connection, foreign_keys: bool = True, authenticator: bool = True) -> None:
    """The Prisma adapter's tables; ``authenticator=False`` is a schema from before WebAuthn support."""
    children = ["Account", "Session", *(["Authenticator"] if authenticator else [])]
    statements = [PRISMA_TABLES, PRISMA_AUTHENTICATOR if authenticator else ""]
    if foreign_keys:
        statements += [PRISMA_FOREIGN_KEY.format(table=table) for table in children]
    else:  # Authenticator's primary key already leads with userId
        statements += [PRISMA_RELATION_INDEX.format(table=table) for table in ("Account", "Session")]
    with conn.transaction():
        conn.execute("\n".join(statements))


def create_pg_adapter_schema(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(PG_ADAPTER_TABLES)
