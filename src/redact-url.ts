// Store and server URLs carry passwords (postgres://user:password@host/db, redis://:password@host,
// ?password=...). Anything that prints a URL — a configuration error, a log line, a CLI message —
// prints redactUrl(url) instead, never the URL itself.

/** Query parameters that carry secrets in the connection strings Sigil reads (libpq, ioredis) or might. */
const SECRET_PARAM = /pass|pwd|secret|token|credential/i;
/** What stands in for a removed secret. */
export const REDACTED = '***';

function redactQuery(search: string): string {
  if (!search) return '';
  return `?${search.slice(1).split('&').map((pair) => {
    const eq = pair.indexOf('=');
    const name = eq < 0 ? pair : pair.slice(0, eq);
    return eq >= 0 && SECRET_PARAM.test(decodeURIComponentSafe(name)) ? `${name}=${REDACTED}` : pair;
  }).join('&')}`;
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * `raw` fit to print: the user name and password (the whole userinfo) and every password-like query
 * parameter replaced by ***. A string that does not parse as a URL with a host, or has an "@" past its
 * host (a password with an unencoded "/", "?" or "#" parses that way), is not split where a parser
 * would split it: everything up to its last "@" is replaced, and password-like parameters anywhere.
 */
export function redactUrl(raw: string): string {
  const url = parsedWithHost(raw);
  if (url && !`${url.pathname}${url.search}${url.hash}`.includes('@')) {
    const userinfo = url.username || url.password ? `${REDACTED}@` : '';
    return `${url.protocol}//${userinfo}${url.host}${url.pathname}${redactQuery(url.search)}${url.hash}`;
  }
  const at = raw.lastIndexOf('@');
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(raw)?.[0] ?? '';
  const rest = at >= 0 ? `${scheme}${REDACTED}${raw.slice(at)}` : raw;
  return rest.replace(/([^?&=\s]*(?:pass|pwd|secret|token|credential)[^=&\s]*=)[^&#\s]*/gi, `$1${REDACTED}`);
}

function parsedWithHost(raw: string): URL | undefined {
  const url = URL.parse(raw);
  return url?.host ? url : undefined;
}

/**
 * A comma-separated list of URLs (e.g. Redis Cluster seed nodes), each redacted. When a part is not a
 * URL (a password with a comma splits wrongly), the whole string is redacted as one.
 */
export function redactUrlList(raw: string): string {
  const parts = raw.split(',').map((p) => p.trim());
  if (!parts.every((p) => p === '' || parsedWithHost(p))) return redactUrl(raw);
  return parts.map((p) => (p ? redactUrl(p) : p)).join(',');
}
