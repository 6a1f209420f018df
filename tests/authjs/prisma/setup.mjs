// Idempotent: regenerates the Prisma 7 client (`prisma-client` generator, TS
// output) and compiles it to ESM JavaScript that Node 20 can import, without
// any network access.
import { execFileSync } from "node:child_process"
import { rmSync } from "node:fs"
import { fileURLToPath } from "node:url"

const here = fileURLToPath(new URL(".", import.meta.url))
const bin = (name) => fileURLToPath(new URL(`node_modules/.bin/${name}`, import.meta.url))
const run = (cmd, args, env = {}) =>
  execFileSync(cmd, args, { cwd: here, stdio: "inherit", env: { ...process.env, ...env } })

rmSync(new URL("generated", import.meta.url), { recursive: true, force: true })
run(bin("prisma"), ["generate"], {
  PRISMA_SCHEMA_ENGINE_BINARY: "./no-schema-engine", // see that file
  CHECKPOINT_DISABLE: "1",
  PRISMA_HIDE_UPDATE_MESSAGE: "1",
})
run(bin("tsc"), ["-p", "tsconfig.generated.json"])
