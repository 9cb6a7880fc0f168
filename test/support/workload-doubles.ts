// In-memory stand-ins for the trust configuration (WorkloadTrust) and the workload client index
// (WorkloadClientIndex), which other modules implement over Postgres and fetched bundles; and signing
// authorities that mint JWT-SVIDs and federated JWTs whose every header member and claim a test chooses.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import type { ClientRecord } from '../../src/clients/client-store.js';
import type { WorkloadAuthOutcome } from '../../src/workload/assertion-checks.js';
import { parseSpiffePattern, spiffeIdMatches, type SpiffeId } from '../../src/workload/spiffe-id.js';
import type { Federation, TrustAnswer, WorkloadBinding, WorkloadClientIndex, WorkloadTrust } from '../../src/workload/types.js';
import { signJws } from './forge.js';

export interface Authority {
  kid: string;
  alg: 'ES256' | 'EdDSA' | 'PS256' | 'RS256';
  privateKey: CryptoKey;
  /** the public JWK as a bundle / JWKS publishes it */
  publicJwk: JWK;
}

export async function authority(kid: string = randomUUID(), alg: Authority['alg'] = 'ES256', use = 'jwt-svid'): Promise<Authority> {
  const pair = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey: pair.privateKey, publicJwk: { ...(await exportJWK(pair.publicKey)), kid, use } };
}

/** A JWT signed by `by`: header { alg, kid, typ: 'JWT' } and `claims`, each overridable (undefined removes). */
export function mint(by: Authority, claims: Record<string, unknown>, header: Record<string, unknown> = {}, signWith?: CryptoKey | Uint8Array): Promise<string> {
  return signJws({ alg: by.alg, kid: by.kid, typ: 'JWT', ...header }, claims, signWith ?? by.privateKey);
}

/** Trust domains (name → bundle keys or a problem) and federations (issuer → settings and keys), as a test sets them. */
export class MemoryTrust implements WorkloadTrust {
  readonly domains = new Map<string, TrustAnswer<JWK[]>>();
  readonly federations = new Map<string, { federation: Federation; keys: TrustAnswer<JWK[]> }>();
  /** set: every lookup throws it (a store away) */
  failure: Error | undefined;
  readonly asked: string[] = [];

  addDomain(name: string, keys: JWK[]): void {
    this.domains.set(name, { ok: true, value: keys });
  }

  addFederation(issuer: string, keys: JWK[], settings: Partial<Federation> = {}): Federation {
    const federation: Federation = { issuer, maxLifetimeSeconds: 3600, createdBy: 'test', createdAt: new Date(), updatedAt: new Date(), ...settings };
    this.federations.set(issuer, { federation, keys: { ok: true, value: keys } });
    return federation;
  }

  async jwtAuthorities(trustDomain: string): Promise<TrustAnswer<JWK[]>> {
    this.asked.push(`jwt:${trustDomain}`);
    if (this.failure) throw this.failure;
    return this.domains.get(trustDomain) ?? { ok: false, problem: `trust domain "${trustDomain}" is not configured` };
  }

  async x509Authorities(): Promise<TrustAnswer<never[]>> {
    return { ok: false, problem: 'not in this test' };
  }

  async federation(issuer: string): Promise<Federation | undefined> {
    this.asked.push(`federation:${issuer}`);
    if (this.failure) throw this.failure;
    return this.federations.get(issuer)?.federation;
  }

  async federationKeys(issuer: string): Promise<TrustAnswer<JWK[]>> {
    if (this.failure) throw this.failure;
    return this.federations.get(issuer)?.keys ?? { ok: false, problem: `issuer "${issuer}" is not configured` };
  }
}

/** A client record bound to a workload identity (defaults: active, client_credentials, DPoP). */
export function workloadClient(clientId: string, workload: WorkloadBinding, extra: Partial<ClientRecord> = {}): ClientRecord {
  return {
    clientId, name: clientId, status: 'active', scope: [], audiences: ['https://api.example'], serves: [], grantTypes: ['client_credentials'],
    dpopRequired: true, canIntrospect: false, isAdmin: false, workload, tokenBinding: 'dpop', createdAt: new Date(), updatedAt: new Date(), ...extra,
  };
}

/** The index as its contract says: every stored client whose binding matches (revoked ones included, to see they are filtered). */
export class MemoryClientIndex implements WorkloadClientIndex {
  readonly clients: ClientRecord[] = [];
  failure: Error | undefined;

  add(...clients: ClientRecord[]): this {
    this.clients.push(...clients);
    return this;
  }

  async bySpiffeId(id: SpiffeId): Promise<ClientRecord[]> {
    if (this.failure) throw this.failure;
    return this.clients.filter((c) => {
      if (c.workload?.kind !== 'spiffe') return false;
      const pattern = parseSpiffePattern(c.workload.spiffeId);
      return pattern.ok && spiffeIdMatches(pattern.value, id);
    });
  }

  async byFederatedSubject(issuer: string, subject: string): Promise<ClientRecord[]> {
    if (this.failure) throw this.failure;
    return this.clients.filter((c) => c.workload?.kind === 'federated' && c.workload.issuer === issuer && c.workload.subject === subject);
  }
}

/** The outcome is a refusal (401, not 503) whose reason matches `pattern`. */
export function assertRefused(outcome: WorkloadAuthOutcome, pattern: RegExp): void {
  assert.equal(outcome.ok, false, 'expected a refusal');
  if (outcome.ok) return;
  assert.equal(outcome.kind, 'refused');
  assert.match(outcome.problem, pattern);
}
