#!/usr/bin/env node
// Runs the TypeScript simulator through tsx, so `npx vllm-sim serve MODEL ...` works after `npm ci`.
import { register } from 'tsx/esm/api';

register();
await import('../src/simulator/cli.ts');
