import { defineConfig } from 'drizzle-kit';

// Only used by `npm run db:generate` to turn schema.pg.ts changes into PostgreSQL migrations
// (no database is contacted to generate them).
export default defineConfig({
  dialect: 'postgresql',
  schema: './service/src/db/schema.pg.ts',
  out: './service/drizzle-pg',
});
