// A node-postgres pool as an app would configure it; `schema` puts that schema first on its search path.
import pg from "pg"

export function createPool({ databaseUrl, schema }) {
  const options = schema ? `-c search_path=${quoteIdentifier(schema)},public` : undefined
  return new pg.Pool({ connectionString: databaseUrl, options, max: 4 })
}

export function quoteIdentifier(name) {
  return `"${String(name).replaceAll('"', '""')}"`
}

export async function createSchemaIfNamed(pool, schema) {
  if (schema) await pool.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)}`)
}
