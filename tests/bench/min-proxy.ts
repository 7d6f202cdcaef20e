// Reference point for the benchmark: the thinnest Node relay (node:http + one undici Pool, no routing, no
// auth, no logging). It shows what Node itself costs, apart from what the gateway adds on top.
import http from 'node:http';
import { Pool } from 'undici';

const [port, upstream] = [Number(process.argv[2]), process.argv[3]!];
const pool = new Pool(upstream, { connections: null, pipelining: 1, keepAliveTimeout: 4000, keepAliveMaxTimeout: 4000, headersTimeout: 0, bodyTimeout: 0 });

http
  .createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      // Every end-to-end header goes upstream (the upstream reads x-bench-chunk-ms from them), as in any relay.
      const { host: _h, connection: _c, 'content-length': _l, 'transfer-encoding': _t, 'keep-alive': _k, ...headers } = req.headers;
      pool.request({ method: req.method as 'GET', path: req.url!, headers: headers as Record<string, string>, body: chunks.length ? Buffer.concat(chunks) : null }).then(
        (up) => {
          res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? '') });
          up.body.pipe(res);
        },
        () => res.writeHead(502).end(),
      );
    });
  })
  .listen({ port, host: '127.0.0.1', backlog: 4096 }); // as the gateway's and nginx's
