// The routes vLLM serves, from its OpenAPI schema (`GET /openapi.json`): enough to answer a request for a
// route it does not have without waking a sleeping engine for its 404. Pure.

export type RouteMatch = { kind: 'known' } | { kind: 'no_route' } | { kind: 'wrong_method'; allow: string[] };

export interface RouteTable {
  match(path: string, method: string): RouteMatch;
  readonly size: number;
}

const METHODS = new Set(['get', 'head', 'post', 'put', 'patch', 'delete', 'options']);

/** The table from a parsed schema, or undefined when it has no usable `paths`. */
export function routeTableOf(schema: unknown): RouteTable | undefined {
  const paths = (schema as { paths?: unknown } | null)?.paths;
  if (!paths || typeof paths !== 'object') return undefined;
  const exact = new Map<string, string[]>();
  const templated: { re: RegExp; methods: string[] }[] = [];
  for (const [path, ops] of Object.entries(paths as Record<string, unknown>)) {
    if (typeof path !== 'string' || !path.startsWith('/') || !ops || typeof ops !== 'object') continue;
    const methods = Object.keys(ops).filter((m) => METHODS.has(m)).map((m) => m.toUpperCase());
    if (methods.includes('GET')) methods.push('HEAD'); // Starlette answers HEAD wherever GET is
    if (!path.includes('{')) exact.set(path, methods);
    else templated.push({ re: new RegExp('^' + path.split(/\{[^}/]+\}/).map(escape).join('[^/]+') + '$'), methods });
  }
  return {
    size: exact.size + templated.length,
    match(path, method) {
      const methods = exact.get(path) ?? templated.find((t) => t.re.test(path))?.methods;
      if (!methods) return { kind: 'no_route' };
      return methods.includes(method) ? { kind: 'known' } : { kind: 'wrong_method', allow: methods };
    },
  };
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
