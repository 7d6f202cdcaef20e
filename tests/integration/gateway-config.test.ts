// Configuration as a user gives it: a .env file in the working directory, under what the environment sets.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { gatewayFactory, tempFile } from '../helpers/gateway.ts';
import { postJson } from '../helpers/net.ts';

const gateway = gatewayFactory();

test('.env in the working directory is read; a variable the environment sets wins over it', async () => {
  const dir = path.dirname(tempFile('.env'));
  fs.writeFileSync(path.join(dir, '.env'), '# a user\'s .env\nAPI_KEYS=from-dotenv\nMAX_BODY_BYTES=1000000\n');
  const gw = await gateway({ cwd: dir, env: { MAX_BODY_BYTES: '2000' } });
  const chat = { messages: [{ role: 'user', content: 'x' }], max_tokens: 1 };
  assert.equal((await postJson(`${gw.url}/v1/chat/completions`, chat)).status, 401, 'API_KEYS came from .env');
  assert.equal((await postJson(`${gw.url}/v1/chat/completions`, chat, { authorization: 'Bearer from-dotenv' })).status, 200);
  const big = { messages: [{ role: 'user', content: 'y'.repeat(3000) }] };
  assert.equal((await postJson(`${gw.url}/v1/chat/completions`, big, { authorization: 'Bearer from-dotenv' })).status, 413, 'MAX_BODY_BYTES from the environment won');
});
