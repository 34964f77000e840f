import { defineConfig } from 'drizzle-kit';

// Only used by `npm run db:generate` to turn schema.ts changes into SQL migrations.
export default defineConfig({
  dialect: 'turso',
  schema: './service/src/db/schema.ts',
  out: './service/drizzle',
  dbCredentials: { url: 'file:./data/drizzle-kit.db' },
});
