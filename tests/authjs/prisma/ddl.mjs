// The PostgreSQL DDL of schema.prisma, as Prisma 7 itself computes it for
// `prisma migrate diff --from-empty --to-schema schema.prisma --script`, but
// from Prisma's WebAssembly schema engine (@prisma/schema-engine-wasm, the
// build that matches this Prisma version) instead of the native one the CLI
// downloads. The wasm engine talks to PostgreSQL only through a driver adapter,
// and opening it checks the server version and creates the target schema if
// missing, so a reachable database is needed even for this pure diff.
//
//   node ddl.mjs [databaseUrl] [schema]    (defaults: $DATABASE_URL or the
//                                           local test server; "public")
import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { PrismaPg } from "@prisma/adapter-pg"
import { bindMigrationAwareSqlAdapterFactory } from "@prisma/driver-adapter-utils"

export const DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
const SCHEMA_FILE = new URL("schema.prisma", import.meta.url)

let engineModule
// The package's own entry imports the .wasm as an ES module, which Node 20 only
// does behind a flag; instantiate it by hand with the wasm-bindgen glue instead.
async function loadEngine() {
  if (!engineModule) {
    const glueUrl = import.meta.resolve("@prisma/schema-engine-wasm/schema_engine_bg")
    const glue = await import(glueUrl)
    const bytes = await readFile(new URL("schema_engine_bg.wasm", glueUrl))
    const { instance } = await WebAssembly.instantiate(bytes, { "./schema_engine_bg.js": glue })
    glue.__wbg_set_wasm(instance.exports)
    instance.exports.__wbindgen_start()
    engineModule = glue
  }
  return engineModule
}

export async function ddl({ databaseUrl = DEFAULT_DATABASE_URL, schema = "public" } = {}) {
  const { SchemaEngine } = await loadEngine()
  const datamodel = await readFile(SCHEMA_FILE, "utf8")
  const files = [{ path: "schema.prisma", content: datamodel }]
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 })
  const factory = bindMigrationAwareSqlAdapterFactory(new PrismaPg(pool, { schema }))
  try {
    const engine = await SchemaEngine.new({ datamodels: [["schema.prisma", datamodel]] }, () => {}, factory)
    try {
      const { stdout } = await engine.diff({
        from: { tag: "empty" },
        to: { tag: "schemaDatamodel", files },
        script: true,
        exitCode: null,
        filters: { externalTables: [], externalEnums: [] },
      })
      return stdout
    } finally {
      engine.free()
    }
  } finally {
    await pool.end()
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [databaseUrl = process.env.DATABASE_URL || DEFAULT_DATABASE_URL, schema = "public"] = process.argv.slice(2)
  process.stdout.write((await ddl({ databaseUrl, schema })) + "\n")
}
