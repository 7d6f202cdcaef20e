// `npm run build`: compiles src/ into a fresh directory, then swaps it in for dist/ with renames, so that a
// gateway starting from dist/ never sees a half-written build, and two builds never write the same files.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fresh = path.join(root, `dist.building-${process.pid}`);
const old = path.join(root, `dist.old-${process.pid}`);
const dist = path.join(root, 'dist');
const tsc = path.join(root, 'node_modules/typescript/bin/tsc');

const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--outDir', fresh], { stdio: 'inherit' });
if (r.status !== 0) {
  fs.rmSync(fresh, { recursive: true, force: true });
  process.exit(r.status ?? 1);
}
try {
  fs.renameSync(dist, old);
} catch (e) {
  if (e.code !== 'ENOENT') throw e;
}
fs.renameSync(fresh, dist);
fs.rmSync(old, { recursive: true, force: true });
