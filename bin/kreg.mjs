#!/usr/bin/env node
// The `kreg` bin: registers tsx's loader, then runs the TypeScript CLI (no build step needed).
//
// @kubernetes/client-node is a thousand plain JS modules; loaded through tsx's hooks it takes about
// twice as long as through Node's own loader. Commands that talk to a cluster load it first,
// before the hooks are registered, which keeps a no-op `kreg deploy` well under a second.
const command = process.argv[2];
if (command && !['synth', 'help', '-h', '--help'].includes(command) && !process.argv.includes('--help') && !process.argv.includes('-h')) {
  await import('@kubernetes/client-node');
}
const { register } = await import('tsx/esm/api');
register();
const { run } = await import('../infra/cli.ts');
process.exitCode = await run(process.argv.slice(2));
