#!/usr/bin/env node
// The `kreg` bin: registers tsx's loader, then runs the TypeScript CLI (no build step needed).
import { register } from 'tsx/esm/api';
register();
const { run } = await import('../infra/cli.ts');
process.exitCode = await run(process.argv.slice(2));
