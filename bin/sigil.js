#!/usr/bin/env node
// The `sigil` admin CLI (see CONTRACT.md). The code is TypeScript compiled to dist/ by `npm ci`
// (prepare) or `npm run build`; this file only checks the runtime and hands over.
import { existsSync } from 'node:fs';

const [major] = process.versions.node.split('.').map(Number);
if (major < 22) {
  process.stderr.write(`sigil: needs Node.js 22 or newer, this is ${process.version}; run it as \`npx sigil\` from the project, which uses the project's Node\n`);
  process.exit(1);
}

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('sigil: the CLI is not built; run `npm run build` in the project first\n');
  process.exit(1);
}
const { main } = await import(entry.href);
await main();
