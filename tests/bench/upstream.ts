// A minimal, fast stand-in for vLLM's OpenAI server (its streaming format, none of its work), so that the
// benchmark measures the proxy in front of it. Run as its own process: `upstream.ts PORT`.
// Streams: POST /v1/chat/completions {"stream":true,"max_tokens":N}; header x-bench-chunk-ms sets the gap.
import http from 'node:http';

const port = Number(process.argv[2] ?? 0);
const created = Math.floor(Date.now() / 1000);
const chunk = (id: string, content: string) =>
  `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":"bench","choices":[{"index":0,"delta":{"content":"${content}"},"logprobs":null,"finish_reason":null}]}\n\n`;
const roleChunk = (id: string) =>
  `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":"bench","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n`;
const finish = (id: string) =>
  `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":"bench","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"length","stop_reason":null}]}\n\ndata: [DONE]\n\n`;
const small = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created,
  model: 'bench',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, logprobs: null, finish_reason: 'stop', stop_reason: null }],
  usage: { prompt_tokens: 5, total_tokens: 6, completion_tokens: 1 },
});

let seq = 0;
const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  if (req.method === 'GET') {
    if (url === '/health') return res.writeHead(200, { 'content-length': 0 }).end();
    if (url === '/version') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"version":"0.19.1"}');
    if (url === '/v1/models') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[{"id":"bench","object":"model"}]}');
    if (url === '/is_sleeping') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"is_sleeping":false}');
    return res.writeHead(404, { 'content-type': 'application/json' }).end('{"detail":"Not Found"}');
  }
  const parts: Buffer[] = [];
  req.on('data', (c: Buffer) => parts.push(c));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(parts).toString('utf8') || '{}') as { stream?: boolean; max_tokens?: number };
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(small) });
      return res.end(small);
    }
    const id = `chatcmpl-${++seq}`;
    const n = body.max_tokens ?? 10;
    const gap = Number(req.headers['x-bench-chunk-ms'] ?? 0);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    res.write(roleChunk(id));
    let i = 0;
    const next = () => {
      if (res.destroyed) return;
      if (i >= n) return void res.end(finish(id));
      i++;
      if (gap > 0) {
        res.write(chunk(id, 'tok'));
        setTimeout(next, gap);
      } else if (res.write(chunk(id, 'tok'))) setImmediate(next);
      else res.once('drain', next);
    };
    if (gap > 0) setTimeout(next, gap);
    else next();
  });
});
server.keepAliveTimeout = 5000;
// uvicorn's default accept queue (2048): a thousand streams opening at once must not overflow it.
server.listen({ port, host: '127.0.0.1', backlog: 2048 }, () => {
  process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
