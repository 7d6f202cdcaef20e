#!/usr/bin/env node
// The gateway's command: the compiled build (npm run build) when present, the TypeScript sources through tsx otherwise.
import { existsSync } from 'node:fs';

if (existsSync(new URL('../dist/main.js', import.meta.url))) {
  await import('../dist/main.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/main.ts');
}
