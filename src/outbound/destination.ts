// Which destinations Sigil may be aimed at by a URL someone else chose (SSRF): public addresses over
// https, unless the operator allowed an internal host by name or, in development, loopback over http.
// The URL checks run before anything is resolved; the address check runs on every resolved address.
import { isIP } from 'node:net';
import { classifyAddress, type AddressClass } from './address-ranges.js';

export interface DestinationPolicy {
  /** development only: http:// (and https://) to loopback hosts (localhost, 127.0.0.0/8, [::1]) */
  allowHttpLoopback: boolean;
  /** hostnames (or IP literals) that may resolve to internal addresses (private, loopback, link-local, CGNAT) */
  allowedHosts: readonly string[];
}

/** What the URL is for, as refusals name it: e.g. `jwks_uri` whose content is `keys`. */
export interface OutboundPurpose {
  /** the name of the URL (a metadata field), first word of every refusal */
  field: string;
  /** what Sigil fetches from it */
  content: string;
}

/** A destination or an answer Sigil will not use; the message says why, for the partner or operator. */
export class OutboundRefused extends Error {
  override name = 'OutboundRefused';
}

const INTERNAL = new Set<AddressClass>(['private', 'loopback', 'link-local', 'cgnat']);

const ARTICLE: Record<AddressClass, string> = {
  public: 'a public', unspecified: 'an unspecified', loopback: 'a loopback', private: 'a private', 'link-local': 'a link-local',
  cgnat: 'a carrier-grade NAT (shared)', multicast: 'a multicast', broadcast: 'a broadcast', documentation: 'a documentation',
  benchmarking: 'a benchmarking', reserved: 'a reserved',
};

/** Host as compared: lower case, no brackets, no trailing dot. */
export function canonicalHost(hostname: string): string {
  const h = hostname.toLowerCase();
  return (h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h).replace(/\.$/, '');
}

function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  return isIP(host) !== 0 && classifyAddress(host) === 'loopback';
}

/**
 * Why `address` (that `host` is or resolves to) may not be fetched from, as a fact about the address
 * ("host h resolves to a, a private address"); undefined when it may.
 */
export function addressProblem(host: string, address: string, policy: DestinationPolicy): string | undefined {
  const cls = classifyAddress(address);
  if (cls === 'public') return undefined;
  if (cls === 'loopback' && policy.allowHttpLoopback && isLoopbackHost(host)) return undefined;
  if (INTERNAL.has(cls) && policy.allowedHosts.some((h) => canonicalHost(h) === host)) return undefined;
  return host === canonicalHost(address) ? `host ${host} is ${ARTICLE[cls]} address` : `host ${host} resolves to ${address}, ${ARTICLE[cls]} address`;
}

/** The refusal of a destination address, as the operator or partner reads it. */
export function addressRefusal(purpose: OutboundPurpose, problem: string): string {
  return `${purpose.field} ${problem}; Sigil fetches ${purpose.content} only from public addresses`;
}

/** The checks a URL must pass before anything is resolved or fetched; a sentence saying what to fix, or undefined. */
export function destinationUrlProblem(raw: unknown, policy: DestinationPolicy, purpose: OutboundPurpose): string | undefined {
  const { field } = purpose;
  if (typeof raw !== 'string' || raw === '' || raw.length > 2000) return `${field} must be an absolute https URL of at most 2000 characters`;
  const url = URL.parse(raw);
  if (!url) return `${field} is not an absolute URL: ${JSON.stringify(raw.slice(0, 200))}`;
  if (raw.includes('#')) return `${field} must not have a fragment (#...)`;
  if (url.username || url.password) return `${field} must not carry credentials (user:password@)`;
  const host = canonicalHost(url.hostname);
  if (url.protocol === 'http:') {
    if (!(policy.allowHttpLoopback && isLoopbackHost(host))) {
      return policy.allowHttpLoopback ? `${field} must use https (plain http is allowed only for loopback hosts)` : `${field} must use https`;
    }
  } else if (url.protocol !== 'https:') {
    return `${field} must use https, not ${url.protocol.slice(0, -1)}`;
  }
  if (!host) return `${field} must name a host`;
  const literal = isIP(host) ? addressProblem(host, host, policy) : undefined;
  return literal && addressRefusal(purpose, literal);
}
