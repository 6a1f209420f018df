// @auth/drizzle-adapter with its default PostgreSQL tables: the schema file its documentation gives, turned
// into DDL by drizzle-kit (as `drizzle-kit generate` does); the adapter itself is given no tables. In another
// PostgreSQL schema the tables are declared with pgSchema(schema).table and passed to the adapter, as its
// documentation says for tables that differ from the defaults (drizzle-kit qualifies every reference).
import { DrizzleAdapter } from "@auth/drizzle-adapter"
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api"
import { drizzle } from "drizzle-orm/node-postgres"
import { boolean, integer, pgSchema, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core"
import { createPool, createSchemaIfNamed } from "./connection.mjs"

function documentedTables(table) {
  const users = table("user", {
    id: text("id").primaryKey().$defaultFn(() => crypto.randomUUID()),
    name: text("name"),
    email: text("email").unique(),
    emailVerified: timestamp("emailVerified", { mode: "date" }),
    image: text("image"),
  })
  const userId = () => text("userId").notNull().references(() => users.id, { onDelete: "cascade" })
  return {
    usersTable: users,
    accountsTable: table(
      "account",
      {
        userId: userId(),
        type: text("type").notNull(),
        provider: text("provider").notNull(),
        providerAccountId: text("providerAccountId").notNull(),
        refresh_token: text("refresh_token"),
        access_token: text("access_token"),
        expires_at: integer("expires_at"),
        token_type: text("token_type"),
        scope: text("scope"),
        id_token: text("id_token"),
        session_state: text("session_state"),
      },
      (t) => [primaryKey({ columns: [t.provider, t.providerAccountId] })],
    ),
    sessionsTable: table("session", {
      sessionToken: text("sessionToken").primaryKey(),
      userId: userId(),
      expires: timestamp("expires", { mode: "date" }).notNull(),
    }),
    verificationTokensTable: table(
      "verificationToken",
      {
        identifier: text("identifier").notNull(),
        token: text("token").notNull(),
        expires: timestamp("expires", { mode: "date" }).notNull(),
      },
      (t) => [primaryKey({ columns: [t.identifier, t.token] })],
    ),
    authenticatorsTable: table(
      "authenticator",
      {
        credentialID: text("credentialID").notNull().unique(),
        userId: userId(),
        providerAccountId: text("providerAccountId").notNull(),
        credentialPublicKey: text("credentialPublicKey").notNull(),
        counter: integer("counter").notNull(),
        credentialDeviceType: text("credentialDeviceType").notNull(),
        credentialBackedUp: boolean("credentialBackedUp").notNull(),
        transports: text("transports"),
      },
      (t) => [primaryKey({ columns: [t.userId, t.credentialID] })],
    ),
  }
}

export async function open({ databaseUrl, schema }) {
  const pool = createPool({ databaseUrl, schema })
  const db = drizzle(pool)
  const tables = documentedTables(schema ? (...args) => pgSchema(schema).table(...args) : pgTable)
  return {
    adapter: schema ? DrizzleAdapter(db, tables) : DrizzleAdapter(db),
    async createSchema() {
      await createSchemaIfNamed(pool, schema)
      const statements = await generateMigration(generateDrizzleJson({}), generateDrizzleJson(tables))
      for (const statement of statements) await pool.query(statement)
    },
    close: () => pool.end(),
  }
}
