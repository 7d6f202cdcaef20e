import assert from 'node:assert/strict';
import { test } from 'node:test';
import { routeTableOf } from '../../src/engine/routes.ts';

test('routes from vLLM\'s OpenAPI schema: exact and templated paths, methods, HEAD with GET', () => {
  const t = routeTableOf({
    openapi: '3.1.0',
    paths: {
      '/v1/chat/completions': { post: {} },
      '/v1/models': { get: {} },
      '/v1/responses/{response_id}': { get: {}, delete: {} },
      '/v1/responses/{response_id}/cancel': { post: {}, parameters: [] },
    },
  })!;
  assert.equal(t.size, 4);
  assert.deepEqual(t.match('/v1/chat/completions', 'POST'), { kind: 'known' });
  assert.deepEqual(t.match('/v1/chat/completions', 'GET'), { kind: 'wrong_method', allow: ['POST'] });
  assert.deepEqual(t.match('/v1/models', 'HEAD'), { kind: 'known' });
  assert.deepEqual(t.match('/v1/responses/resp_1', 'DELETE'), { kind: 'known' });
  assert.deepEqual(t.match('/v1/responses/resp_1/cancel', 'POST'), { kind: 'known' });
  assert.deepEqual(t.match('/v1/responses/a/b', 'GET'), { kind: 'known' }, 'a last template may be {x:path}: it errs towards known');
  assert.deepEqual(t.match('/v1/responses', 'GET'), { kind: 'no_route' }, 'a template needs a segment');
  assert.deepEqual(t.match('/v1/embeddings', 'POST'), { kind: 'no_route' });
  assert.deepEqual(t.match('/v1/models/', 'GET'), { kind: 'known' }, 'a trailing slash is the route without it');
  assert.equal(routeTableOf({ detail: 'Not Found' }), undefined);
  assert.equal(routeTableOf(null), undefined);
});

test('a hostile schema cannot slow matching down or refuse real routes: no regular expressions, bounded size', () => {
  // Twelve templates in one segment was a catastrophic backtracking regex (25 s for a 40-character path).
  const t = routeTableOf({ paths: { '/v1/{a}{b}{c}{d}{e}{f}{g}{h}{i}{j}{k}{l}x': { post: {} }, '/v1/files/{path}': { get: {} }, '/v1/.*': { post: {} } } })!;
  const t0 = performance.now();
  assert.deepEqual(t.match('/v1/' + 'a'.repeat(5000), 'POST'), { kind: 'known' }, 'a mixed segment matches any one segment');
  assert.ok(performance.now() - t0 < 500, 'linear in the path (a guard against backtracking, not a speed target)');
  assert.deepEqual(t.match('/v1/files/a/b/c', 'GET'), { kind: 'known' }, 'a last template may span segments ({x:path})');
  assert.deepEqual(t.match('/v1/xyz', 'GET'), { kind: 'wrong_method', allow: ['POST'] });
  assert.deepEqual(t.match('/v1/.*', 'POST'), { kind: 'known' });
  assert.deepEqual(t.match('/v1/chat/completions', 'POST'), { kind: 'no_route' }, 'metacharacters are text');
  const huge = Object.fromEntries(Array.from({ length: 5001 }, (_, i) => [`/v1/r${i}/{x}`, { post: {} }]));
  assert.equal(routeTableOf({ paths: huge }), undefined, 'too many paths: the table is not used');
  assert.deepEqual(routeTableOf({ paths: { '/v1/x': [] } })?.match('/v1/x', 'POST'), { kind: 'no_route' }, 'ops that are not an object are skipped');
  assert.deepEqual(routeTableOf({ paths: { '/v1/x': { parameters: [] } } })?.match('/v1/x', 'POST'), { kind: 'known' }, 'no methods listed: not refused');
});
