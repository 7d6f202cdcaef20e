// The documents that describe the code are held to it: the state table, the error catalogue, the README's
// size, and every reference a source comment makes to a document.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ENGINE_STATES, TRANSITIONS } from '../../src/engine/states.ts';
import { ERROR_CATALOGUE } from '../../src/errors.ts';
import { ROOT } from '../helpers/sim.ts';

const read = (p: string) => fs.readFileSync(path.join(ROOT, p), 'utf8');

/** Rows of the first markdown table whose header row is `header`, as arrays of trimmed cells. */
function tableRows(text: string, header: string): string[][] {
  const lines = text.split('\n');
  const at = lines.indexOf(header);
  assert.ok(at >= 0, `a table headed ${header}`);
  const rows: string[][] = [];
  for (const line of lines.slice(at + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.slice(1, -1).split(' | ').map((c) => c.trim().replace(/^`|`$/g, '')));
  }
  return rows;
}

/** The README's state diagram, as the table produces it. */
function stateDiagram(): string {
  const w = Math.max(...ENGINE_STATES.map((s) => s.length));
  return ENGINE_STATES.map((from) => `${from.padEnd(w)}  → ${Object.keys(TRANSITIONS[from]).join(', ') || '(end)'}`).join('\n');
}

test('docs/contract.md lists exactly the transitions of src/engine/states.ts, with their reasons', () => {
  const rows = tableRows(read('docs/contract.md'), '| from | to | when |');
  const want = ENGINE_STATES.flatMap((from) => Object.entries(TRANSITIONS[from]).map(([to, why]) => [from, to, why]));
  assert.deepEqual(rows, want);
});

test('the README\'s state diagram is the one the table produces', () => {
  assert.ok(read('README.md').includes('```\n' + stateDiagram() + '\n```'), `README.md should show:\n${stateDiagram()}`);
});

test('docs/contract.md lists exactly the error catalogue of src/errors.ts', () => {
  const rows = tableRows(read('docs/contract.md'), '| code | status | type | meaning |');
  const want = Object.entries(ERROR_CATALOGUE).map(([code, s]) => [code, String(s.status), s.type, s.meaning]);
  assert.deepEqual(rows, want);
});

test('the README is a guide of at most about 12 KB; depth is in docs/', () => {
  const size = Buffer.byteLength(read('README.md'));
  assert.ok(size <= 12_500, `README.md is ${size} bytes`);
  for (const doc of ['docs/contract.md', 'docs/vllm.md', 'docs/performance.md']) assert.ok(fs.existsSync(path.join(ROOT, doc)), doc);
});

test('every document a source comment names exists, and so does the section it names', () => {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(dir, e.name));
      else if (e.name.endsWith('.ts')) files.push(path.join(dir, e.name));
    }
  };
  walk('src');
  const problems: string[] = [];
  let refs = 0;
  for (const f of files) {
    const text = read(f);
    if (text.includes('§')) problems.push(`${f}: a § reference`);
    for (const m of text.matchAll(/contract/g)) {
      if (text.slice(m.index - 5, m.index + 11) !== 'docs/contract.md') problems.push(`${f}: "contract" outside a docs/contract.md reference`);
    }
    for (const m of text.matchAll(/docs\/([a-z-]+\.md)(?:, ([A-Z][A-Za-z ]+[a-z]))?/g)) {
      refs++;
      const doc = path.join('docs', m[1]!);
      if (!fs.existsSync(path.join(ROOT, doc))) problems.push(`${f}: ${doc} does not exist`);
      else if (m[2] && !new RegExp(`^#+ ${m[2]}$`, 'm').test(read(doc))) problems.push(`${f}: ${doc} has no section "${m[2]}"`);
    }
  }
  assert.deepEqual(problems, []);
  assert.ok(refs > 10, `${refs} references checked`);
});
