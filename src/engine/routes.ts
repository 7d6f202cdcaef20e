// The routes vLLM serves, from its OpenAPI schema (`GET /openapi.json`): enough to answer a request for a
// route it does not have without waking a sleeping engine for its 404. Pure. The schema comes from the
// upstream, so matching is segment by segment (no regular expression built from it), bounded in size,
// and errs towards "known": a false "known" costs a wake, a false 404 would refuse a real route.

export type RouteMatch = { kind: 'known' } | { kind: 'no_route' } | { kind: 'wrong_method'; allow: string[] };

export interface RouteTable {
  match(path: string, method: string): RouteMatch;
  readonly size: number;
}

const METHODS = new Set(['get', 'head', 'post', 'put', 'patch', 'delete', 'options']);
/** Beyond this many paths the schema is not used (every request goes on as if the table were unknown). */
const MAX_PATHS = 5000;

/** A segment: literal text, or any one segment (`{param}`, or a template mixed with text). */
type Segment = string | null;

interface Templated {
  segments: Segment[];
  /** The last segment is a template: FastAPI's `{x:path}` shows as `{x}`, so it may span several segments. */
  tail: boolean;
  methods: string[];
}

/** The table from a parsed schema, or undefined when it has no usable `paths` (or too many). */
export function routeTableOf(schema: unknown): RouteTable | undefined {
  const paths = (schema as { paths?: unknown } | null)?.paths;
  if (!paths || typeof paths !== 'object' || Array.isArray(paths)) return undefined;
  const entries = Object.entries(paths as Record<string, unknown>);
  if (entries.length > MAX_PATHS) return undefined;
  const exact = new Map<string, string[]>();
  const templated: Templated[] = [];
  for (const [path, ops] of entries) {
    if (!path.startsWith('/') || !ops || typeof ops !== 'object' || Array.isArray(ops)) continue;
    const methods = Object.keys(ops).filter((m) => METHODS.has(m)).map((m) => m.toUpperCase());
    if (methods.includes('GET')) methods.push('HEAD'); // Starlette answers HEAD wherever GET is
    const key = stripSlash(path);
    if (!key.includes('{')) {
      exact.set(key, methods);
      continue;
    }
    const raw = key.split('/');
    const segments: Segment[] = raw.map((s) => (s.includes('{') ? null : s));
    templated.push({ segments, tail: /^\{[^{}]*\}$/.test(raw.at(-1)!), methods });
  }
  return {
    size: exact.size + templated.length,
    match(path, method) {
      const key = stripSlash(path); // Starlette redirects a trailing slash to the route without it
      let methods = exact.get(key);
      if (!methods) {
        // Every template that fits counts (their methods together): the most specific may not be first.
        const parts = key.split('/');
        const fitting = templated.filter((t) => fits(t, parts));
        if (fitting.length) methods = [...new Set(fitting.flatMap((t) => t.methods))];
      }
      if (!methods) return { kind: 'no_route' };
      if (!methods.length || methods.includes(method)) return { kind: 'known' };
      return { kind: 'wrong_method', allow: methods };
    },
  };
}

function stripSlash(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

function fits(t: Templated, parts: string[]): boolean {
  const n = t.segments.length;
  if (parts.length < n || (parts.length > n && !t.tail)) return false;
  for (let i = 0; i < n; i++) {
    const s = t.segments[i];
    if (s !== null && s !== parts[i]) return false;
    if (s === null && parts[i] === '') return false;
  }
  return true;
}
