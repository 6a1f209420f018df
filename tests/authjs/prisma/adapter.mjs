// The official Auth.js Prisma adapter (@auth/prisma-adapter) over Prisma 7's
// Rust-free client with the pg driver adapter, usable with no internet access.
//
// Setup (once, and again after editing schema.prisma):
//   npm ci --prefix tests/authjs/prisma && npm run --prefix tests/authjs/prisma setup
// `setup` runs `prisma generate` (no engine binary is involved: the client
// compiles queries with bundled wasm and sends them through @prisma/adapter-pg)
// and compiles the generated TypeScript to generated/js for Node 20.
//
// Tables: the Prisma CLI's migrate/db commands need a native schema engine that
// it downloads from Prisma's binary host, which is unreachable here (it even
// asks for it before `generate`, hence the no-schema-engine stand-in). So the
// DDL comes from Prisma's wasm schema engine instead, as an empty -> schema.prisma
// diff, i.e. what `prisma migrate diff --from-empty --to-schema` prints
// (ddl.mjs), and createSchema() applies it.
//
//   const { adapter, createSchema, close } = await open({ databaseUrl, schema })
import pg from "pg"
import { PrismaPg } from "@prisma/adapter-pg"
import { PrismaAdapter } from "@auth/prisma-adapter"
import { ddl } from "./ddl.mjs"

const quoteIdent = (name) => `"${String(name).replaceAll('"', '""')}"`

async function loadPrismaClient() {
  try {
    return (await import("./generated/js/client.js")).PrismaClient
  } catch (error) {
    if (error.code !== "ERR_MODULE_NOT_FOUND") throw error
    throw new Error("Prisma client not generated: run `npm run setup` in tests/authjs/prisma", { cause: error })
  }
}

export async function open({ databaseUrl, schema = "public" }) {
  const PrismaClient = await loadPrismaClient()
  // `schema` makes the client qualify every table with that PostgreSQL schema.
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: databaseUrl }, { schema }) })
  return {
    adapter: PrismaAdapter(prisma),
    prisma,
    // Creates the Auth.js tables (none of them may exist yet) in `schema`,
    // creating the schema itself if needed, in one transaction.
    async createSchema() {
      const sql = await ddl({ databaseUrl, schema })
      const client = new pg.Client({ connectionString: databaseUrl })
      await client.connect()
      try {
        await client.query("BEGIN")
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`)
        // The DDL names tables unqualified, as Prisma migrations do.
        await client.query(`SET LOCAL search_path TO ${quoteIdent(schema)}`)
        await client.query(sql)
        await client.query("COMMIT")
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {})
        throw error
      } finally {
        await client.end()
      }
    },
    async close() {
      await prisma.$disconnect()
    },
  }
}
