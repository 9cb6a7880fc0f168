// What the verifier knows of the issuer: its RFC 8414 metadata and its signing keys. The JWKS is kept
// exactly as long as its Cache-Control max-age allows (Sigil's never outlives the next key change);
// a kid not in it makes one refetch, at most once per cool-down, so a token signed by a key published
// after the last fetch is still accepted and a stream of junk kids cannot make it fetch in a loop.
import { createPublicKey, type KeyObject } from 'node:crypto';

export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>;

export interface IssuerMetadata {
  issuer: string;
  jwks_uri: string;
  introspection_endpoint?: string;
  status_list_aggregation_endpoint?: string;
  dpop_signing_alg_values_supported?: string[];
  [k: string]: unknown;
}

export interface IssuerKey {
  kid: string | undefined;
  /** the JWK's alg, when it names one: the only algorithm this key verifies */
  alg: string | undefined;
  kty: string;
  crv: string | undefined;
  key: KeyObject;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
/** without a max-age, the JWKS is kept this long */
const DEFAULT_MAX_AGE_SECONDS = 300;
/** and never longer than this, whatever it says */
const MAX_MAX_AGE_SECONDS = 86_400;

export function maxAgeOf(res: Response, fallback = DEFAULT_MAX_AGE_SECONDS): number {
  const cc = res.headers.get('cache-control') ?? '';
  if (/\bno-(store|cache)\b/i.test(cc)) return 0;
  const m = /\bmax-age=(\d{1,9})\b/i.exec(cc);
  return Math.min(m ? Number(m[1]) : fallback, MAX_MAX_AGE_SECONDS);
}

/** RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path. */
export function discoveryUrl(issuer: string): string {
  const u = new URL(issuer);
  const path = u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '');
  return `${u.origin}/.well-known/oauth-authorization-server${path}`;
}

/** The verification keys of a JWKS; private, symmetric, non-signing and unreadable keys are left out. */
export function importJwks(jwks: readonly unknown[]): IssuerKey[] {
  const keys: IssuerKey[] = [];
  for (const jwk of jwks as Record<string, unknown>[]) {
    if (typeof jwk !== 'object' || jwk === null) continue;
    // a published private or symmetric key is a misconfiguration: never verify with it
    if (PRIVATE_MEMBERS.some((m) => m in jwk) || jwk.kty === 'oct') continue;
    if (jwk.use !== undefined && jwk.use !== 'sig') continue;
    let key: KeyObject;
    try {
      key = createPublicKey({ key: jwk as never, format: 'jwk' });
    } catch {
      continue;
    }
    keys.push({
      kid: typeof jwk.kid === 'string' ? jwk.kid : undefined,
      alg: typeof jwk.alg === 'string' ? jwk.alg : undefined,
      kty: String(jwk.kty),
      crv: typeof jwk.crv === 'string' ? jwk.crv : undefined,
      key,
    });
  }
  return keys;
}

/** The issuer's public JWKS read in its own process: a new array whenever its keys change. */
export type LocalJwks = () => readonly object[];

export class IssuerState {
  #metadata: { doc: IssuerMetadata; until: number } | undefined;
  #metadataLoading: Promise<IssuerMetadata> | undefined;
  #keys: { keys: IssuerKey[]; until: number; fetchedAt: number } | undefined;
  #keysLoading: Promise<IssuerKey[]> | undefined;
  /** JWKS fetches so far (tests, metrics) */
  jwksFetches = 0;

  constructor(
    readonly issuer: string,
    private readonly fetchImpl: FetchLike,
    private readonly now: () => number,
    private readonly refetchCooldownMs: number,
    /** the keys read in-process instead of fetched (the issuer's own API): always current, never fetched */
    private readonly localJwks?: LocalJwks,
  ) {}

  #localSource: readonly object[] | undefined;

  /** the local JWKS, imported again only when the issuer hands out a new array */
  #localKeys(local: LocalJwks): IssuerKey[] {
    const source = local();
    if (source !== this.#localSource || !this.#keys) {
      this.#localSource = source;
      this.#keys = { keys: importJwks(source), until: Infinity, fetchedAt: this.now() };
    }
    return this.#keys.keys;
  }

  async metadata(): Promise<IssuerMetadata> {
    const m = this.#metadata;
    if (m && this.now() < m.until) return m.doc;
    this.#metadataLoading ??= this.#loadMetadata().finally(() => (this.#metadataLoading = undefined));
    try {
      return await this.#metadataLoading;
    } catch (err) {
      // the document changes only with the issuer's configuration: an expired copy beats no copy
      if (m) return m.doc;
      throw err;
    }
  }

  async #loadMetadata(): Promise<IssuerMetadata> {
    const res = await this.fetchImpl(discoveryUrl(this.issuer), { headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`discovery at ${this.issuer} answered ${res.status}`);
    const doc = (await res.json()) as IssuerMetadata;
    if (doc.issuer !== this.issuer) throw new Error(`discovery names issuer ${String(doc.issuer)}, not ${this.issuer}`);
    if (typeof doc.jwks_uri !== 'string') throw new Error('discovery has no jwks_uri');
    this.#metadata = { doc, until: this.now() + maxAgeOf(res, 3600) * 1000 };
    return doc;
  }

  /** The current keys, fetched again when max-age has passed. */
  async keys(): Promise<IssuerKey[]> {
    if (this.localJwks) return this.#localKeys(this.localJwks);
    const k = this.#keys;
    if (k && this.now() < k.until) return k.keys;
    return this.#refresh();
  }

  /** The keys that may have signed a JWT with this kid: refetched once per cool-down when none does. */
  async keysFor(kid: string | undefined): Promise<IssuerKey[]> {
    const keys = await this.keys();
    const found = keys.filter((k) => kid === undefined || k.kid === kid);
    if (found.length || kid === undefined || this.localJwks) return found;
    const fetchedAt = this.#keys?.fetchedAt ?? 0;
    if (this.now() - fetchedAt < this.refetchCooldownMs) return [];
    return (await this.#refresh()).filter((k) => k.kid === kid);
  }

  /** the cached keys without any fetch: the hot path, when they are current */
  cachedKeys(): IssuerKey[] | undefined {
    if (this.localJwks) return this.#localKeys(this.localJwks);
    const k = this.#keys;
    return k && this.now() < k.until ? k.keys : undefined;
  }

  #refresh(): Promise<IssuerKey[]> {
    this.#keysLoading ??= this.#loadKeys().finally(() => (this.#keysLoading = undefined));
    return this.#keysLoading;
  }

  async #loadKeys(): Promise<IssuerKey[]> {
    const { jwks_uri } = await this.metadata();
    this.jwksFetches++;
    const res = await this.fetchImpl(jwks_uri, { headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`JWKS at ${jwks_uri} answered ${res.status}`);
    const body = (await res.json()) as { keys?: unknown };
    if (!Array.isArray(body.keys)) throw new Error('JWKS has no keys array');
    const keys = importJwks(body.keys);
    const now = this.now();
    this.#keys = { keys, until: now + maxAgeOf(res) * 1000, fetchedAt: now };
    return keys;
  }
}
