// Canonical request paths: percent-decoded, dot segments removed, repeated slashes folded, so that no
// spelling of a path (`/v1/../sleep`, `/v1/%2e%2e/wake_up`, `//collective_rpc`) reaches a route it does not name.

export const INVALID_PATH = '/\u0000invalid';

/** The canonical form of a raw URL path, or INVALID_PATH when it cannot be decoded. */
export function canonicalPath(rawPath: string): string {
  if (!/[%\\\0]|\/\/|\/\.|\.$/.test(rawPath)) return rawPath; // the common case: nothing to normalise
  let decoded = rawPath;
  // Decode until stable so double-encoding (%252e) cannot smuggle a dot segment past us.
  for (let i = 0; i < 3 && decoded.includes('%'); i++) {
    try {
      decoded = decodeURIComponent(decoded);
    } catch {
      return INVALID_PATH;
    }
  }
  if (decoded.includes('\u0000') || decoded.includes('\\')) return INVALID_PATH;
  const out: string[] = [];
  for (const seg of decoded.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  const trailing = decoded.length > 1 && decoded.endsWith('/') && out.length > 0 ? '/' : '';
  return '/' + out.join('/') + trailing;
}

/** The path part of a request URL without parsing the whole URL (hot path). */
export function rawPathOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('//') + 2);
  if (start < 0) return '/';
  const q = url.indexOf('?', start);
  return q < 0 ? url.slice(start) : url.slice(start, q);
}

export function rawQueryOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? '' : url.slice(q);
}
