// SPIFFE IDs (SPIFFE-ID spec §2) and the patterns a client is bound to: an exact ID, or a trailing `/*`
// matching a path-segment prefix, as draft-ietf-oauth-spiffe-client-auth describes
// (`spiffe://example.org/ns/pay/*` matches `/ns/pay/x` and `/ns/pay/x/y`, not `/ns/pay` nor `/ns/payments`).
// Hand-written: the grammar is small and fixed, and no maintained Node library for it exists.

/** SPIFFE-ID spec: the longest ID */
export const MAX_SPIFFE_ID_LENGTH = 2048;
/** trust domain: lowercase letters, digits, dots, dashes and underscores */
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
/** a path segment: letters, digits, dots, dashes and underscores; not "." or ".." */
const SEGMENT = /^[A-Za-z0-9._-]+$/;

export interface SpiffeId {
  /** the whole ID, as given (it is canonical when it parses) */
  id: string;
  trustDomain: string;
  /** "" or "/seg/seg" */
  path: string;
}

/** A trust domain name as `sigil trust-domains add` takes it; undefined when valid, else why not. */
export function trustDomainProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0 || name.length > 255) return 'a trust domain is 1 to 255 characters';
  if (!TRUST_DOMAIN.test(name)) return 'a trust domain has only lowercase letters, digits, ".", "-" and "_" (e.g. example.org)';
  return undefined;
}

function pathProblem(path: string): string | undefined {
  if (path === '') return undefined;
  if (!path.startsWith('/')) return 'the path must start with "/"';
  for (const segment of path.slice(1).split('/')) {
    if (segment === '') return 'the path must not have empty segments or a trailing "/"';
    if (segment === '.' || segment === '..') return 'the path must not have "." or ".." segments';
    if (!SEGMENT.test(segment)) return 'path segments have only letters, digits, ".", "-" and "_"';
  }
  return undefined;
}

/** Parses a SPIFFE ID; a sentence saying what is wrong when it is not one. */
export function parseSpiffeId(value: unknown): { ok: true; value: SpiffeId } | { ok: false; problem: string } {
  if (typeof value !== 'string' || value.length === 0) return { ok: false, problem: 'a SPIFFE ID is a non-empty string' };
  if (value.length > MAX_SPIFFE_ID_LENGTH) return { ok: false, problem: `a SPIFFE ID is at most ${MAX_SPIFFE_ID_LENGTH} characters` };
  if (!value.startsWith('spiffe://')) return { ok: false, problem: 'a SPIFFE ID starts with spiffe:// (lowercase)' };
  const rest = value.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem) return { ok: false, problem: `${tdProblem}; got ${JSON.stringify(trustDomain.slice(0, 80))}` };
  const problem = pathProblem(path);
  if (problem) return { ok: false, problem };
  return { ok: true, value: { id: value, trustDomain, path } };
}

/** A client's SPIFFE ID pattern: an ID, or an ID with a trailing `/*` (a path-segment prefix; not the bare trust domain). */
export interface SpiffePattern {
  pattern: string;
  trustDomain: string;
  /** the exact path, or the prefix path before `/*` */
  path: string;
  prefix: boolean;
}

export function parseSpiffePattern(value: unknown): { ok: true; value: SpiffePattern } | { ok: false; problem: string } {
  const prefix = typeof value === 'string' && value.endsWith('/*');
  const parsed = parseSpiffeId(prefix ? (value as string).slice(0, -2) : value);
  if (!parsed.ok) return parsed;
  if (parsed.value.path === '') {
    return { ok: false, problem: 'a client SPIFFE ID names a workload: it has a path (spiffe://example.org/ns/x, or spiffe://example.org/ns/* for a prefix)' };
  }
  return { ok: true, value: { pattern: value as string, trustDomain: parsed.value.trustDomain, path: parsed.value.path, prefix } };
}

/** Whether `id` (a parsed SPIFFE ID) is matched by `pattern`: same trust domain, and the same path or one under the prefix. */
export function spiffeIdMatches(pattern: SpiffePattern, id: SpiffeId): boolean {
  if (pattern.trustDomain !== id.trustDomain) return false;
  if (!pattern.prefix) return pattern.path === id.path;
  return id.path.startsWith(`${pattern.path}/`);
}
