"""Where an Auth.js (NextAuth) database keeps its tables: the adapters' default layouts and their detection.

Layouts (``SESSION_SCHEMA``), as each adapter's documented PostgreSQL schema names the tables:

* ``prisma``: ``"User"``, ``"Account"``, ``"Session"``, ``"VerificationToken"``, ``"Authenticator"`` (the
  Prisma adapter, ``TIMESTAMP(3)`` UTC; the Kysely adapter uses the same names with ``timestamptz``);
* ``pg-adapter``: ``users``, ``accounts``, ``sessions``, ``verification_token`` (@auth/pg-adapter, no
  authenticators);
* ``drizzle``: ``user``, ``account``, ``session``, ``verificationToken``, ``authenticator`` (the Drizzle
  adapter's pg-core defaults, ``timestamp`` without time zone, holding UTC).

``auto`` (the default) looks the session tables of the three layouts up on the connection's search path
(``current_schemas(false)``, or ``AUTH_TABLES_SCHEMA`` when set) and takes the one layout whose table has the
Auth.js session columns; none or several is a :class:`ConfigurationError` naming ``SESSION_SCHEMA`` that
lists what was found. ``SESSION_TABLE`` and ``VERIFICATION_TOKEN_TABLE`` override single tables; with
``SESSION_TABLE`` set, ``auto`` finding no layout is not an error (the other tables are then unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from parel_monitoring.heal.tables import Relation, Table, find_table
from parel_monitoring.settings import ConfigurationError, env_choice, env_str

AUTO = "auto"
LAYOUT_VARIABLE = "SESSION_SCHEMA"
SCHEMA_VARIABLE = "AUTH_TABLES_SCHEMA"
# Columns every adapter's table of that kind has: a default table without them is not taken for Auth.js's.
SESSION_COLUMNS = ("sessionToken", "userId", "expires")
ACCOUNT_COLUMNS = ("userId", "provider", "providerAccountId")
AUTHENTICATOR_COLUMNS = ("userId", "credentialID", "credentialPublicKey")
USER_COLUMNS = ("id", "email", "emailVerified")
VERIFICATION_TOKEN_COLUMNS = ("identifier", "token", "expires")


@dataclass(frozen=True)
class Layout:
    name: str
    user: str
    account: str
    session: str
    verification_token: str
    authenticator: str | None  # optional in every adapter's docs (WebAuthn); pg-adapter has none

    def children(self) -> tuple[tuple[str, bool, tuple[str, ...]], ...]:
        """The tables whose ``"userId"`` references ``user.id``: (name, whether Auth.js requires it, the
        columns it must have)."""
        optional = ((self.authenticator, False, AUTHENTICATOR_COLUMNS),) if self.authenticator else ()
        return ((self.session, True, SESSION_COLUMNS), (self.account, True, ACCOUNT_COLUMNS), *optional)


LAYOUTS = {
    layout.name: layout
    for layout in (
        Layout("prisma", "User", "Account", "Session", "VerificationToken", "Authenticator"),
        Layout("pg-adapter", "users", "accounts", "sessions", "verification_token", None),
        Layout("drizzle", "user", "account", "session", "verificationToken", "authenticator"),
    )
}


def _relation(variable: str, text: str | None, default_schema: str | None) -> Relation | None:
    """``variable``'s value ``text`` as a table name (None when unset)."""
    if text is None:
        return None
    relation = Relation.parse(text, default_schema)
    if relation is None:
        raise ConfigurationError(variable, "must be a table name or schema.name")
    return relation


@dataclass(frozen=True)
class AuthTablesSettings:
    layout: str  # AUTO or a key of LAYOUTS
    schema: str | None = None  # AUTH_TABLES_SCHEMA: where unqualified names live (None: the search path)
    session_table: Relation | None = None  # SESSION_TABLE (None: the layout's)
    verification_table: Relation | None = None  # VERIFICATION_TOKEN_TABLE (None: the layout's)

    @classmethod
    def from_env(cls) -> AuthTablesSettings:
        schema = env_str("AUTH_TABLES_SCHEMA")
        if schema is not None and "." in schema:
            raise ConfigurationError(SCHEMA_VARIABLE, "must be a schema name")
        return cls(
            layout=env_choice("SESSION_SCHEMA", AUTO, (AUTO, *LAYOUTS)),
            schema=schema,
            session_table=_relation("SESSION_TABLE", env_str("SESSION_TABLE"), schema),
            verification_table=_relation("VERIFICATION_TOKEN_TABLE", env_str("VERIFICATION_TOKEN_TABLE"), schema),
        )

    def named(self, name: str) -> Relation:
        """A layout table's name, in ``AUTH_TABLES_SCHEMA`` or on the search path."""
        return Relation(self.schema, name)


def _is_session_table(table: Table | None) -> bool:
    return table is not None and all(column in table.columns for column in SESSION_COLUMNS)


def detect_layout(conn: psycopg.Connection, settings: AuthTablesSettings) -> Layout | None:
    """``settings``' layout: the preset, or the one detected (None only when ``SESSION_TABLE`` is set)."""
    if settings.layout != AUTO:
        return LAYOUTS[settings.layout]
    found: list[str] = []
    matches: list[Layout] = []
    for layout in LAYOUTS.values():
        table = find_table(conn, settings.named(layout.session))
        if table is None:
            continue
        if _is_session_table(table):
            matches.append(layout)
            found.append(f"{table.relation} ({layout.name})")
        else:
            found.append(f"{table.relation} (lacks {', '.join(c for c in SESSION_COLUMNS if c not in table.columns)})")
    if len(matches) == 1:
        return matches[0]
    if not matches and settings.session_table is not None:
        return None
    where = f"in schema {settings.schema}" if settings.schema else "on the search path"
    seen = "; ".join(found) or "no session table"
    if not matches:
        problem = f"is auto and no Auth.js session table was found {where} (found: {seen})"
    else:
        problem = f"is auto and several Auth.js layouts were found {where} ({seen}): set it to one of them"
    raise ConfigurationError(LAYOUT_VARIABLE, f"{problem}; presets: {', '.join(LAYOUTS)}")
