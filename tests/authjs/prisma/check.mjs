// Smoke check: node check.mjs <databaseUrl> [schema]
// Creates the Auth.js tables in a fresh database, writes a user, account,
// session and verification token through the Prisma adapter, reads them back
// and prints the results as JSON.
import { open } from "./adapter.mjs"

const [databaseUrl, schema = "public"] = process.argv.slice(2)
if (!databaseUrl) {
  console.error("usage: node check.mjs <databaseUrl> [schema]")
  process.exit(2)
}

const { adapter, createSchema, close } = await open({ databaseUrl, schema })
try {
  await createSchema()
  const inOneHour = new Date(Date.now() + 3600_000)
  const user = await adapter.createUser({ id: "ignored", email: "check@example.test", emailVerified: null, name: "Check" })
  await adapter.linkAccount({ userId: user.id, type: "oauth", provider: "github", providerAccountId: "gh-1", access_token: "at", expires_at: 1_900_000_000 })
  await adapter.createSession({ sessionToken: "sess-1", userId: user.id, expires: inOneHour })
  await adapter.createVerificationToken({ identifier: "check@example.test", token: "vt-1", expires: inOneHour })

  const result = {
    schema,
    user,
    sessionAndUser: await adapter.getSessionAndUser("sess-1"),
    userByAccount: await adapter.getUserByAccount({ provider: "github", providerAccountId: "gh-1" }),
    usedVerificationToken: await adapter.useVerificationToken({ identifier: "check@example.test", token: "vt-1" }),
    verificationTokenUsedTwice: await adapter.useVerificationToken({ identifier: "check@example.test", token: "vt-1" }),
  }
  const ok =
    result.sessionAndUser?.user.id === user.id &&
    result.userByAccount?.id === user.id &&
    result.usedVerificationToken?.token === "vt-1" &&
    result.verificationTokenUsedTwice === null
  console.log(JSON.stringify({ ok, ...result }, null, 2))
  process.exitCode = ok ? 0 : 1
} finally {
  await close()
}
