// Sigil's rules for what a token request may ask for. oidc-provider drops what it does not know;
// Sigil refuses instead, so a client never silently gets less (or other) than it asked for.
import { InvalidScope, InvalidTarget } from '../oidc/refusals.js';
import type { ClientRecord } from '../clients/client-store.js';

/** The audience of the token: the requested `resource`, which must be registered, else the first registered one. */
export function resolveAudience(resource: unknown, client: ClientRecord): string {
  if (resource === undefined || resource === '') {
    const first = client.audiences[0];
    if (!first) throw new InvalidTarget('the client has no registered audience; register one with --audience');
    return first;
  }
  if (Array.isArray(resource)) {
    throw new InvalidTarget('only one resource may be requested per token');
  }
  if (typeof resource !== 'string' || !client.audiences.includes(resource)) {
    throw new InvalidTarget('the requested resource is not one of the client\'s registered audiences');
  }
  return resource;
}

/** The scope granted: what was asked for when all of it is allowed, everything allowed when nothing was asked. */
export function grantedScope(requested: unknown, allowed: readonly string[]): string[] {
  if (requested === undefined || requested === '') return [...allowed];
  if (typeof requested !== 'string') throw new InvalidScope('scope must be a single space-delimited string', '');
  const asked = [...new Set(requested.split(' ').filter(Boolean))];
  const refused = asked.filter((s) => !allowed.includes(s));
  if (refused.length) throw new InvalidScope('requested scope is not allowed for this client', refused.join(' '));
  return asked;
}
