// Which route an original request falls under. The path is the one the client sent, before the
// upstream decodes it, so anything the upstream could read as another path is refused rather than
// guessed at: dot segments (also percent-encoded), empty segments, encoded "/" "\" ";" "%", and
// matrix parameters. Percent-encoded unreserved characters are decoded first (RFC 3986 §6.2.2.2), so
// "/%6frders" matches the route "/orders" as the upstream will read it. The longest prefix wins, on
// a segment boundary: "/orders" covers "/orders" and "/orders/42", never "/ordersX".
import type { Route } from './config.js';

export type PathProblem = 'not_absolute' | 'bad_character' | 'bad_escape' | 'encoded_separator' | 'dot_segment' | 'empty_segment';

const UNRESERVED = /[A-Za-z0-9\-._~]/;
/** escapes the upstream would decode into a separator, an escape, or a control character */
const REFUSED_ESCAPES = /^(?:2F|5C|3B|25|[01][0-9A-F]|7F)$/;

/** The path of `pathAndQuery` as route matching sees it, or why it is refused. */
export function normalisePath(pathAndQuery: string): { path: string } | { problem: PathProblem } {
  const end = pathAndQuery.search(/[?#]/);
  const raw = end === -1 ? pathAndQuery : pathAndQuery.slice(0, end);
  if (!raw.startsWith('/')) return { problem: 'not_absolute' };
  // visible ASCII only: a raw space, control or non-ASCII byte is malformed on the wire anyway
  if (/[^\x21-\x7e]/.test(raw) || raw.includes('\\') || raw.includes(';')) return { problem: 'bad_character' };
  let path = '';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch !== '%') {
      path += ch;
      continue;
    }
    const hex = raw.slice(i + 1, i + 3).toUpperCase();
    if (!/^[0-9A-F]{2}$/.test(hex)) return { problem: 'bad_escape' };
    if (REFUSED_ESCAPES.test(hex)) return { problem: 'encoded_separator' };
    const decoded = String.fromCharCode(parseInt(hex, 16));
    path += UNRESERVED.test(decoded) ? decoded : `%${hex}`;
    i += 2;
  }
  const segments = path.split('/').slice(1);
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '.' || s === '..') return { problem: 'dot_segment' };
    // "/orders/" is fine (a trailing slash); "/orders//42" and "//orders" are not
    if (s === '' && i < segments.length - 1) return { problem: 'empty_segment' };
  }
  return { path };
}

/** Host header / X-Forwarded-Host / URL host as matched: lower case, no port, no trailing dot. */
export function hostForMatching(host: string): string {
  const h = host.trim().toLowerCase();
  const bare = h.startsWith('[') ? h.slice(0, h.indexOf(']') + 1) : h.replace(/:\d*$/, '');
  return bare.replace(/\.$/, '');
}

const covers = (prefix: string, path: string) => prefix === '/' || path === prefix || path.startsWith(`${prefix}/`);

export class RouteTable {
  readonly #routes: readonly Route[];

  constructor(routes: readonly Route[]) {
    // longest prefix first; at the same length a route naming the host before one for any host
    this.#routes = [...routes].sort((a, b) => b.prefix.length - a.prefix.length || Number(b.host !== undefined) - Number(a.host !== undefined));
  }

  match(host: string | undefined, path: string): Route | undefined {
    const h = host === undefined ? undefined : hostForMatching(host);
    return this.#routes.find((r) => (r.host === undefined || r.host === h) && covers(r.prefix, path));
  }
}
