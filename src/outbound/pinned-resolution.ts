// A host name is resolved once; every address it resolves to is checked; the connection then goes to
// the checked address and to no other. A resolver that answers differently the second time (DNS
// rebinding) gets no second time.
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { addressProblem, addressRefusal, OutboundRefused, type DestinationPolicy, type OutboundPurpose } from './destination.js';

export interface ResolvedAddress {
  address: string;
  family: number;
}

export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/**
 * The address to connect to for `host` (canonical: lower case, no brackets): an IP literal is its own
 * answer; a name is resolved once and refused if any of its addresses is. Gives up when `deadline` aborts.
 */
export async function resolveChecked(
  host: string, policy: DestinationPolicy, purpose: OutboundPurpose, resolve: Resolver, deadline: AbortSignal,
): Promise<ResolvedAddress> {
  const family = isIP(host);
  const addresses = family ? [{ address: host, family }] : await untilAborted(resolve(host), deadline).catch((err: unknown) => {
    if (err instanceof OutboundRefused) throw err;
    throw new OutboundRefused(`${purpose.field} host ${host} does not resolve`);
  });
  if (!addresses.length) throw new OutboundRefused(`${purpose.field} host ${host} does not resolve`);
  for (const a of addresses) {
    const problem = addressProblem(host, a.address, policy);
    if (problem) throw new OutboundRefused(addressRefusal(purpose, problem));
  }
  return addresses[0]!;
}

/** A `lookup` for http(s).request that answers every query with the checked address. */
export function pinnedLookup(pinned: ResolvedAddress): LookupFunction {
  return (_hostname, options, callback) => {
    if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: ResolvedAddress[]) => void)(null, [pinned]);
    else callback(null, pinned.address, pinned.family);
  };
}

/** `work`, or the deadline's reason once it aborts (a resolver may never answer). */
function untilAborted<T>(work: Promise<T>, deadline: AbortSignal): Promise<T> {
  if (deadline.aborted) return Promise.reject(deadline.reason as unknown);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(deadline.reason as unknown);
    deadline.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => deadline.removeEventListener('abort', onAbort));
  });
}
