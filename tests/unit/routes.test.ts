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
  assert.deepEqual(t.match('/v1/responses/a/b', 'GET'), { kind: 'no_route' }, 'a template segment is one segment');
  assert.deepEqual(t.match('/v1/embeddings', 'POST'), { kind: 'no_route' });
  assert.equal(routeTableOf({ detail: 'Not Found' }), undefined);
  assert.equal(routeTableOf(null), undefined);
});
