// @auth/kysely-adapter with Kysely's PostgresDialect, and the migration its documentation gives (uuid ids,
// timestamptz, foreign keys ON DELETE CASCADE, no Authenticator table).
import { KyselyAdapter } from "@auth/kysely-adapter"
import { Kysely, PostgresDialect, sql } from "kysely"
import { createPool, createSchemaIfNamed } from "./connection.mjs"

async function migrate(db) {
  const uuidKey = (column) => column.primaryKey().defaultTo(sql`gen_random_uuid()`)
  const userReference = (column) => column.references("User.id").onDelete("cascade").notNull()
  await db.schema
    .createTable("User")
    .addColumn("id", "uuid", uuidKey)
    .addColumn("name", "text")
    .addColumn("email", "text", (column) => column.unique().notNull())
    .addColumn("emailVerified", "timestamptz")
    .addColumn("image", "text")
    .execute()
  let account = db.schema.createTable("Account").addColumn("id", "uuid", uuidKey)
  account = account.addColumn("userId", "uuid", userReference)
  for (const column of ["type", "provider", "providerAccountId"]) {
    account = account.addColumn(column, "text", (c) => c.notNull())
  }
  for (const column of ["refresh_token", "access_token"]) account = account.addColumn(column, "text")
  account = account.addColumn("expires_at", "bigint")
  for (const column of ["token_type", "scope", "id_token", "session_state"]) {
    account = account.addColumn(column, "text")
  }
  await account.execute()
  await db.schema
    .createTable("Session")
    .addColumn("id", "uuid", uuidKey)
    .addColumn("userId", "uuid", userReference)
    .addColumn("sessionToken", "text", (column) => column.notNull().unique())
    .addColumn("expires", "timestamptz", (column) => column.notNull())
    .execute()
  await db.schema
    .createTable("VerificationToken")
    .addColumn("identifier", "text", (column) => column.notNull())
    .addColumn("token", "text", (column) => column.notNull().unique())
    .addColumn("expires", "timestamptz", (column) => column.notNull())
    .execute()
  await db.schema.createIndex("Account_userId_index").on("Account").column("userId").execute()
  await db.schema.createIndex("Session_userId_index").on("Session").column("userId").execute()
}

export async function open({ databaseUrl, schema }) {
  const pool = createPool({ databaseUrl, schema })
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) })
  return {
    adapter: KyselyAdapter(db),
    async createSchema() {
      await createSchemaIfNamed(pool, schema)
      await migrate(db)
    },
    close: () => db.destroy(),
  }
}
