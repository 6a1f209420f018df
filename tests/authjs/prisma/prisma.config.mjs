// Prisma 7 CLI config. Only `prisma generate` is run here (see setup.mjs), which
// needs the schema path and no database URL.
import { defineConfig } from "prisma/config"

export default defineConfig({ schema: "schema.prisma" })
