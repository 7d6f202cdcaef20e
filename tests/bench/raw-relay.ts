// Reference point for the benchmark: a raw TCP relay, no HTTP at all. Each client connection is piped to
// its own upstream connection, bytes in, bytes out: what the per-chunk target calls the floor of any Node
// relay. Run as its own process: `raw-relay.ts PORT UPSTREAM_URL`.
import net from 'node:net';

const [port, upstream] = [Number(process.argv[2]), new URL(process.argv[3]!)];

net
  .createServer({ noDelay: true }, (client) => {
    const up = net.connect({ host: upstream.hostname, port: Number(upstream.port), noDelay: true });
    client.pipe(up);
    up.pipe(client);
    const end = () => {
      client.destroy();
      up.destroy();
    };
    for (const s of [client, up]) s.on('error', end).on('close', end);
  })
  .listen({ port, host: '127.0.0.1', backlog: 4096 });
