// Seeds a database through a real Auth.js adapter, and verifies it through the same adapter after a heal.
//
//   node seed.mjs seed   --adapter <pg|kysely|drizzle|prisma> --database-url <url> [--schema <name>]
//   node seed.mjs verify --adapter <...> --database-url <url> [--schema <name>] --plan <the seed's "plan" JSON>
//   node seed.mjs create-schema --adapter <...> --database-url <url> [--schema <name>]   (the schema only)
//
// Adapters live in adapters/<name>.mjs (prisma: prisma/adapter.mjs, its own package), each exporting
// `open({databaseUrl, schema})` -> {adapter, createSchema(), close()}.
//
// seed: creates the adapter's documented schema, then through the adapter's API users, sessions, verification
// tokens, accounts (and authenticators where the adapter has them); expires some sessions (updateSession with a
// past date) and tokens (created with a past date); deletes two users with raw SQL, the way apps leave orphans:
// one plainly (foreign keys, where the schema has them, cascade), one with triggers off (as a restore or a
// replica load does, bypassing the foreign keys). Prints {command, adapter, plan, present}: what each row is
// expected to be after a heal ("live", "expired", "orphan"), and which rows the tables hold now.
//
// verify: checks through the adapter that every live session, token, account and authenticator resolves and
// every expired or orphaned one is gone, and that the tables hold exactly the live rows. Prints
// {command, adapter, failures, checked, present}; failures is empty when all holds.
//
// Times: every date goes through the adapter as a JS Date; run it with a TZ unlike the database's TimeZone.
import pg from "pg"
import { quoteIdentifier } from "./adapters/connection.mjs"

// Where each adapter's documented schema keeps its rows (for raw SQL only: the adapter's API does the rest).
const PRISMA_TABLES = { user: "User", session: "Session", token: "VerificationToken", account: "Account" }
const TABLES = {
  pg: { user: "users", session: "sessions", token: "verification_token", account: "accounts" },
  kysely: PRISMA_TABLES,
  prisma: { ...PRISMA_TABLES, authenticator: "Authenticator" },
  drizzle: {
    user: "user",
    session: "session",
    token: "verificationToken",
    account: "account",
    authenticator: "authenticator",
  },
}
const MINUTE = 60_000
const HOUR = 60 * MINUTE
// Offsets inside any zone's distance from UTC: a time read in the wrong zone lands on the wrong side of now.
const SESSION_OFFSETS = {
  "live-2h": 2 * HOUR,
  "live-10min": 10 * MINUTE,
  "expired-10min": -10 * MINUTE,
  "expired-3h": -3 * HOUR,
}
const TOKEN_OFFSETS = SESSION_OFFSETS

function parseArguments(argv) {
  const [command, ...rest] = argv
  const options = {}
  for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith("--") || rest[i + 1] === undefined) throw new Error(`bad argument ${rest[i]}`)
    options[rest[i].slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = rest[i + 1]
  }
  if (!TABLES[options.adapter]) throw new Error(`unknown adapter ${options.adapter}`)
  if (!options.databaseUrl) throw new Error("--database-url is required")
  return { command, ...options }
}

async function openAdapter({ adapter, databaseUrl, schema }) {
  const path = adapter === "prisma" ? "./prisma/adapter.mjs" : `./adapters/${adapter}.mjs`
  const module = await import(path)
  return module.open({ databaseUrl, schema })
}

async function rawClient({ databaseUrl, schema }) {
  const options = schema ? `-c search_path=${quoteIdentifier(schema)},public` : undefined
  const client = new pg.Client({ connectionString: databaseUrl, options })
  await client.connect()
  return client
}

async function presentRows(client, tables) {
  const column = {
    session: "sessionToken",
    token: "token",
    account: "providerAccountId",
    authenticator: "credentialID",
  }
  const present = {}
  for (const [kind, name] of Object.entries(tables)) {
    if (kind === "user") continue
    const { rows } = await client.query(`SELECT ${quoteIdentifier(column[kind])} AS key FROM ${quoteIdentifier(name)}`)
    present[kind] = rows.map((row) => row.key).sort()
  }
  return present
}

async function seed(options, opened, client) {
  const { adapter } = opened
  const tables = TABLES[options.adapter]
  await opened.createSchema()
  const now = Date.now()
  const plan = { users: [], sessions: [], tokens: [], accounts: [], authenticators: [] }
  const fates = { "user-a": "live", "user-b": "live", "user-deleted": "deleted", "user-bypassed": "deleted" }
  for (const [name, fate] of Object.entries(fates)) {
    const user = await adapter.createUser({
      id: crypto.randomUUID(),
      name,
      email: `${name}@example.com`,
      emailVerified: null,
      image: null,
    })
    const userId = String(user.id)
    plan.users.push({ id: userId, name, fate })
    for (const [label, offset] of Object.entries(SESSION_OFFSETS)) {
      const sessionToken = `${name}-${label}-${crypto.randomUUID()}`
      await adapter.createSession({ sessionToken, userId: user.id, expires: new Date(now + 30 * 24 * HOUR) })
      const expires = new Date(now + offset)
      await adapter.updateSession({ sessionToken, expires }) // how Auth.js moves a session's expiry
      const expect = offset < 0 ? "expired" : fate === "live" ? "live" : "orphan"
      plan.sessions.push({ sessionToken, userId, expires: expires.toISOString(), expect })
    }
    const providerAccountId = `${name}-${crypto.randomUUID()}`
    await adapter.linkAccount({ userId: user.id, type: "oauth", provider: "github", providerAccountId })
    plan.accounts.push({ provider: "github", providerAccountId, userId, expect: fate === "live" ? "live" : "orphan" })
    if (adapter.createAuthenticator) {
      const credentialID = `${name}-credential`
      await adapter.createAuthenticator({
        credentialID,
        userId: user.id,
        providerAccountId,
        credentialPublicKey: "public-key",
        counter: 0,
        credentialDeviceType: "singleDevice",
        credentialBackedUp: false,
        transports: null,
      })
      plan.authenticators.push({ credentialID, userId, expect: fate === "live" ? "live" : "orphan" })
    }
  }
  for (const [label, offset] of Object.entries(TOKEN_OFFSETS)) {
    const token = {
      identifier: `${label}@example.com`,
      token: `${label}-${crypto.randomUUID()}`,
      expires: new Date(now + offset),
    }
    await adapter.createVerificationToken(token)
    plan.tokens.push({ identifier: token.identifier, token: token.token, expect: offset < 0 ? "expired" : "live" })
  }
  const user = quoteIdentifier(tables.user)
  const idOf = (name) => plan.users.find((u) => u.name === name).id
  await client.query(`DELETE FROM ${user} WHERE id = $1`, [idOf("user-deleted")])
  await client.query("BEGIN")
  await client.query("SET LOCAL session_replication_role = replica") // foreign keys are triggers: off
  await client.query(`DELETE FROM ${user} WHERE id = $1`, [idOf("user-bypassed")])
  await client.query("COMMIT")
  return { plan, present: await presentRows(client, tables) }
}

async function verify(options, opened, client) {
  const { adapter } = opened
  const plan = JSON.parse(options.plan)
  const failures = []
  let checked = 0
  const check = (ok, message) => {
    checked += 1
    if (!ok) failures.push(message)
  }
  const present = await presentRows(client, TABLES[options.adapter])
  const expectPresent = (kind, planned, key) => {
    const live = JSON.stringify(planned.filter((row) => row.expect === "live").map((row) => row[key]).sort())
    const rows = JSON.stringify(present[kind] ?? [])
    check(rows === live, `${kind} rows ${rows} are not exactly the live ${live}`)
  }
  expectPresent("session", plan.sessions, "sessionToken")
  expectPresent("token", plan.tokens, "token") // before useVerificationToken consumes them
  expectPresent("account", plan.accounts, "providerAccountId")
  if (plan.authenticators.length) expectPresent("authenticator", plan.authenticators, "credentialID")

  for (const session of plan.sessions) {
    const found = await adapter.getSessionAndUser(session.sessionToken)
    if (session.expect === "live") {
      check(found !== null, `live session ${session.sessionToken} does not resolve`)
      if (found) {
        check(String(found.user.id) === session.userId, `session ${session.sessionToken} resolves to another user`)
        const expires = new Date(found.session.expires).toISOString()
        check(expires === session.expires, `session ${session.sessionToken} expires ${expires}, not ${session.expires}`)
      }
    } else {
      check(found === null, `${session.expect} session ${session.sessionToken} still resolves`)
    }
  }
  for (const token of plan.tokens) {
    const used = await adapter.useVerificationToken({ identifier: token.identifier, token: token.token })
    if (token.expect === "live") check(used?.token === token.token, `live token ${token.token} cannot be used`)
    else check(used === null, `expired token ${token.token} is still there`)
  }
  for (const account of plan.accounts) {
    const { provider, providerAccountId } = account
    const user = await adapter.getUserByAccount({ provider, providerAccountId })
    if (account.expect === "live") {
      check(String(user?.id) === account.userId, `live account ${providerAccountId} does not resolve to its user`)
    } else {
      check(user === null, `orphan account ${providerAccountId} resolves`)
    }
    if (adapter.getAccount) {
      const row = await adapter.getAccount(providerAccountId, provider)
      const found = row !== null && row !== undefined
      check(found === (account.expect === "live"), `${account.expect} account ${providerAccountId}: getAccount ${found ? "finds" : "misses"} it`)
    }
  }
  for (const authenticator of plan.authenticators) {
    const { credentialID, expect } = authenticator
    const found = (await adapter.getAuthenticator(credentialID)) != null
    check(found === (expect === "live"), `${expect} authenticator ${credentialID}: getAuthenticator ${found ? "finds" : "misses"} it`)
  }
  return { failures, checked, present }
}

async function createSchema(options, opened) {
  await opened.createSchema()
  return {}
}

async function main() {
  const options = parseArguments(process.argv.slice(2))
  const opened = await openAdapter(options)
  const client = await rawClient(options)
  try {
    const commands = { seed, verify, "create-schema": createSchema }
    if (!commands[options.command]) throw new Error(`unknown command ${options.command}`)
    const result = await commands[options.command](options, opened, client)
    console.log(JSON.stringify({ command: options.command, adapter: options.adapter, ...result }))
  } finally {
    await client.end()
    await opened.close()
  }
}

main().catch((error) => {
  console.error(error?.stack ?? String(error))
  process.exit(1)
})
