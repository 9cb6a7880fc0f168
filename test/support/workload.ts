// A workload-identity world the suite builds for itself (SPIRE is not packaged here): a test CA (openssl
// CLI) and the certificates it issues, HTTPS servers on free loopback ports that trust it, a SPIFFE
// bundle endpoint whose bundle, status and latency a test changes at will, a stand-in Kubernetes
// service-account issuer (OIDC discovery + JWKS, key rotation), and JWT-SVIDs: real ones signed with a
// bundle key and forged ones. Sigil processes started by a test trust the CA through
// `workloadServerEnv(ca)` (NODE_EXTRA_CA_CERTS reaches the default roots bounded-fetch uses).
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { signJws, unsignedJwt } from './forge.js';

// ---------------------------------------------------------------- certificates

export interface IssuedCertificate {
  certPem: string;
  keyPem: string;
  certFile: string;
  keyFile: string;
  /** the certificate, parsed */
  x509: X509Certificate;
  /** standard base64 of the DER: an x5c value */
  x5c: string;
}

export interface IssueOptions {
  /** e.g. "/CN=localhost" or "/O=SPIFFE" */
  subject: string;
  /** openssl subjectAltName entries: "DNS:localhost", "IP:127.0.0.1", "URI:spiffe://example.org/x" */
  sans?: string[];
  /** basicConstraints CA:TRUE (and keyCertSign usage unless keyUsage says otherwise) */
  ca?: boolean;
  /** openssl keyUsage value, e.g. "digitalSignature" or "keyCertSign,cRLSign"; "" for none */
  keyUsage?: string;
  /** openssl extendedKeyUsage value, e.g. "serverAuth" or "clientAuth" */
  extendedKeyUsage?: string;
  /** the issuer; undefined: self-signed */
  issuer?: IssuedCertificate;
  days?: number;
  /** the key: "ec" (P-256, default), "ec-p384" or "rsa:2048" */
  keyType?: 'ec' | 'ec-p384' | 'rsa:2048';
}

export interface TestCa extends IssuedCertificate {
  /** the folder every file lives in (removed by close) */
  dir: string;
  /** issues a certificate signed by this CA (or by `issuer`) */
  issue(opts: IssueOptions): IssuedCertificate;
  /** a TLS server certificate for localhost, 127.0.0.1 and ::1 */
  serverCertificate(): IssuedCertificate;
  close(): void;
}

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    // never skip: the workload tests need openssl (.ci/run installs it)
    throw new Error(`openssl could not make a test certificate (install openssl): ${(err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message}`);
  }
}

function issueIn(dir: string, name: string, opts: IssueOptions): IssuedCertificate {
  const certFile = path.join(dir, `${name}.pem`);
  const keyFile = path.join(dir, `${name}.key`);
  const keyType = opts.keyType ?? 'ec';
  const curve = keyType === 'ec' ? 'prime256v1' : keyType === 'ec-p384' ? 'secp384r1' : undefined;
  const args = ['req', '-x509', '-nodes', '-newkey', curve ? 'ec' : keyType, ...(curve ? ['-pkeyopt', `ec_paramgen_curve:${curve}`] : []),
    '-keyout', keyFile, '-out', certFile, '-days', String(opts.days ?? 2), '-subj', opts.subject,
    '-addext', `basicConstraints=critical,CA:${opts.ca ? 'TRUE' : 'FALSE'}`];
  const keyUsage = opts.keyUsage ?? (opts.ca ? 'keyCertSign,cRLSign' : 'digitalSignature');
  if (keyUsage) args.push('-addext', `keyUsage=critical,${keyUsage}`);
  if (opts.extendedKeyUsage) args.push('-addext', `extendedKeyUsage=${opts.extendedKeyUsage}`);
  if (opts.sans?.length) args.push('-addext', `subjectAltName=${opts.sans.join(',')}`);
  if (opts.issuer) args.push('-CA', opts.issuer.certFile, '-CAkey', opts.issuer.keyFile);
  openssl(args);
  const certPem = readFileSync(certFile, 'utf8');
  const x509 = new X509Certificate(certPem);
  return { certPem, keyPem: readFileSync(keyFile, 'utf8'), certFile, keyFile, x509, x5c: x509.raw.toString('base64') };
}

/** A self-signed test CA in a fresh temporary folder; `close()` removes the folder. */
export function createTestCa(name = 'Sigil test CA'): TestCa {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sigil-workload-'));
  let n = 0;
  const root = issueIn(dir, 'ca', { subject: `/CN=${name}`, ca: true });
  let server: IssuedCertificate | undefined;
  const ca: TestCa = {
    ...root,
    dir,
    issue: (opts) => issueIn(dir, `cert-${++n}`, { issuer: root, ...opts }),
    serverCertificate: () => (server ??= ca.issue({ subject: '/CN=localhost', sans: ['DNS:localhost', 'IP:127.0.0.1', 'IP:::1'], extendedKeyUsage: 'serverAuth' })),
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
  return ca;
}

/**
 * A SPIFFE X.509 authority of `trustDomain` (a self-signed CA whose URI SAN is the trust domain's ID,
 * as SPIRE makes them) and its bundle entry (use x509-svid, x5c of one certificate).
 */
export function spiffeX509Authority(ca: TestCa, trustDomain: string): IssuedCertificate & { bundleKey: JWK } {
  const authority = issueIn(ca.dir, `spiffe-${trustDomain}-${Date.now()}-${Math.random().toString(36).slice(2)}`, {
    subject: `/O=SPIFFE/CN=${trustDomain}`, ca: true, sans: [`URI:spiffe://${trustDomain}`],
  });
  return { ...authority, bundleKey: { use: 'x509-svid', ...authority.x509.publicKey.export({ format: 'jwk' }), x5c: [authority.x5c] } as JWK };
}

/**
 * An X.509-SVID: a leaf signed by `authority` whose URI SANs are `spiffeIds` (exactly one for a valid
 * SVID), digital-signature usage, clientAuth. `opts` overrides anything (e.g. ca: true to forge a CA
 * used as a client certificate).
 */
export function issueX509Svid(ca: TestCa, authority: IssuedCertificate, spiffeIds: string | string[], opts: Partial<IssueOptions> = {}): IssuedCertificate {
  const ids = Array.isArray(spiffeIds) ? spiffeIds : [spiffeIds];
  return ca.issue({ subject: '/O=SPIFFE', sans: ids.map((id) => `URI:${id}`), keyUsage: 'digitalSignature', extendedKeyUsage: 'clientAuth', issuer: authority, ...opts });
}

/** Environment for a Sigil child process that must fetch from the test servers (bounded-fetch uses the default roots). */
export function workloadServerEnv(ca: TestCa): Record<string, string> {
  return { NODE_EXTRA_CA_CERTS: ca.certFile, JWKS_URI_ALLOWED_HOSTS: 'localhost' };
}

// ---------------------------------------------------------------- HTTPS servers

export interface TestHttpsServer {
  /** https://localhost:PORT */
  url: string;
  port: number;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** An HTTPS server with the CA's localhost certificate on a free loopback port (127.0.0.1, and ::1 when there is one). */
export async function startHttpsServer(ca: TestCa, handler: Handler): Promise<TestHttpsServer> {
  const { certPem, keyPem } = ca.serverCertificate();
  const options = { cert: `${certPem}${ca.certPem}`, key: keyPem };
  const v4 = https.createServer(options, handler);
  await new Promise<void>((resolve, reject) => v4.once('error', reject).listen(0, '127.0.0.1', () => resolve()));
  const port = (v4.address() as AddressInfo).port;
  // "localhost" may resolve to ::1 first: answer there too, on the same port, when the host has IPv6
  const v6 = https.createServer(options, handler);
  const v6up = await new Promise<boolean>((resolve) => v6.once('error', () => resolve(false)).listen(port, '::1', () => resolve(true)));
  const servers = v6up ? [v4, v6] : [v4];
  return {
    url: `https://localhost:${port}`,
    port,
    close: async () => {
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      })));
    },
  };
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
}

// ---------------------------------------------------------------- JWT-SVID keys and the bundle endpoint

export interface TestSigningKey {
  kid: string;
  alg: 'ES256' | 'RS256' | 'PS256' | 'EdDSA';
  privateKey: CryptoKey;
  /** the public JWK with kid and alg (no use: callers add it) */
  publicJwk: JWK;
}

let keyCounter = 0;

export async function generateSigningKey(alg: TestSigningKey['alg'] = 'ES256', kid = `test-key-${++keyCounter}-${Date.now().toString(36)}`): Promise<TestSigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg } };
}

/** The bundle entry of a JWT-SVID signing key. */
export function jwtSvidBundleKey(key: TestSigningKey): JWK {
  return { ...key.publicJwk, use: 'jwt-svid' };
}

export interface BundleState {
  /** signing keys published with use jwt-svid */
  jwtKeys: TestSigningKey[];
  /** bundle entries published as they are (x509-svid keys, or anything a test wants to serve) */
  extraKeys: unknown[];
  sequence?: number;
  refreshHint?: number;
  /** the answer's status (200 by default) */
  status: number;
  /** answer after this many ms */
  delayMs: number;
  /** serve this instead of the bundle built from the fields above */
  body?: unknown;
  headers: Record<string, string>;
}

export interface BundleServer extends TestHttpsServer {
  /** the bundle endpoint URL */
  endpoint: string;
  state: BundleState;
  /** changes what is served from now on */
  set(changes: Partial<BundleState>): void;
  /** the bundle document served now */
  document(): unknown;
  /** requests answered (or started) so far */
  hits(): number;
}

/** A SPIFFE bundle endpoint serving `initial` (changed by `set`) at /bundle. */
export async function startBundleServer(ca: TestCa, initial: Partial<BundleState> = {}): Promise<BundleServer> {
  const state: BundleState = { jwtKeys: [], extraKeys: [], status: 200, delayMs: 0, headers: {}, ...initial };
  let hits = 0;
  const document = () => state.body ?? {
    keys: [...state.jwtKeys.map(jwtSvidBundleKey), ...state.extraKeys],
    ...(state.sequence !== undefined ? { spiffe_sequence: state.sequence } : {}),
    ...(state.refreshHint !== undefined ? { spiffe_refresh_hint: state.refreshHint } : {}),
  };
  const server = await startHttpsServer(ca, (req, res) => {
    if (req.url !== '/bundle') return send(res, 404, { error: 'not found' });
    hits++;
    const answer = () => send(res, state.status, state.status === 200 ? document() : { error: 'unavailable' }, state.headers);
    if (state.delayMs > 0) setTimeout(answer, state.delayMs).unref();
    else answer();
  });
  return {
    ...server,
    endpoint: `${server.url}/bundle`,
    state,
    set: (changes) => Object.assign(state, changes),
    document,
    hits: () => hits,
  };
}

// ---------------------------------------------------------------- JWT-SVIDs, real and forged

export interface JwtSvidOptions {
  spiffeId: string;
  aud: string | string[];
  key: TestSigningKey;
  /** seconds since the epoch; default now + 300 */
  exp?: number;
  iat?: number;
  nbf?: number;
  /** the header kid; default the key's; null: none */
  kid?: string | null;
  /** the header alg; default the key's */
  alg?: string;
  /** the header typ; default JWT */
  typ?: string;
  /** more (or overriding) claims; a value undefined removes the claim */
  claims?: Record<string, unknown>;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

function svidClaims(opts: Omit<JwtSvidOptions, 'key'>): Record<string, unknown> {
  const iat = opts.iat ?? nowSeconds();
  const claims: Record<string, unknown> = { sub: opts.spiffeId, aud: opts.aud, exp: opts.exp ?? iat + 300, iat, ...(opts.nbf !== undefined ? { nbf: opts.nbf } : {}), ...opts.claims };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  return claims;
}

/** A JWT-SVID (SPIFFE JWT-SVID §3) signed with a bundle key. */
export async function mintJwtSvid(opts: JwtSvidOptions): Promise<string> {
  const kid = opts.kid === null ? undefined : (opts.kid ?? opts.key.kid);
  const header = { alg: opts.alg ?? opts.key.alg, typ: opts.typ ?? 'JWT', ...(kid !== undefined ? { kid } : {}) };
  return signJws(header, svidClaims(opts), opts.key.privateKey);
}

/** Forged JWT-SVIDs: what an attacker without a bundle key tries. */
export const forgedJwtSvid = {
  /** alg none, no signature */
  none: (opts: Omit<JwtSvidOptions, 'key'> & { kid?: string }): string => unsignedJwt({ alg: 'none', typ: 'JWT', ...(opts.kid ? { kid: opts.kid } : {}) }, svidClaims(opts)),
  /**
   * HS256 keyed with `secret`; by default the bytes of the bundle key's public JWK, the classic
   * algorithm-confusion forgery against a verifier that lets the token choose the algorithm.
   */
  hs256: async (opts: Omit<JwtSvidOptions, 'key'> & { key: TestSigningKey; secret?: Uint8Array }): Promise<string> => {
    const secret = opts.secret ?? new TextEncoder().encode(JSON.stringify(opts.key.publicJwk));
    return signJws({ alg: 'HS256', typ: 'JWT', kid: opts.kid ?? opts.key.kid }, svidClaims(opts), secret);
  },
  /** signed by a key of another trust domain (or removed from the bundle), claiming `kid` of the real one */
  otherKey: (opts: JwtSvidOptions & { claimKid?: string }): Promise<string> => mintJwtSvid({ ...opts, kid: opts.claimKid ?? opts.kid }),
};

// ---------------------------------------------------------------- a stand-in Kubernetes service-account issuer

export interface ServiceAccountTokenOptions {
  /** default system:serviceaccount:default:default */
  sub?: string;
  aud: string | string[];
  exp?: number;
  iat?: number;
  nbf?: number;
  /** header kid; default the current signing key's; null: none */
  kid?: string | null;
  /** header alg; default the key's (RS256, as the API server signs) */
  alg?: string;
  /** more (or overriding) claims; a value undefined removes the claim */
  claims?: Record<string, unknown>;
  /** sign with this key instead of the issuer's current one */
  key?: TestSigningKey;
}

export interface ServiceAccountIssuer extends TestHttpsServer {
  /** the `iss` of its tokens: https://localhost:PORT */
  issuer: string;
  jwksUri: string;
  /** the keys published now; the last one signs */
  keys: TestSigningKey[];
  /** a new signing key, published; the old ones stay unless `retire` */
  rotate(opts?: { retire?: boolean; alg?: TestSigningKey['alg'] }): Promise<TestSigningKey>;
  /** overrides of the discovery document's members (e.g. another issuer, another jwks_uri) */
  discovery: Record<string, unknown>;
  /** status of the discovery and JWKS answers (200 by default) */
  status: { discovery: number; jwks: number };
  /** headers of the JWKS answer; by default the API server's `cache-control: public, max-age=3600` */
  jwksHeaders: Record<string, string>;
  hits: { discovery: number; jwks: number };
  mintServiceAccountToken(opts: ServiceAccountTokenOptions): Promise<string>;
}

/** An issuer like a Kubernetes API server's: /.well-known/openid-configuration and /openid/v1/jwks. */
export async function startServiceAccountIssuer(ca: TestCa): Promise<ServiceAccountIssuer> {
  const keys = [await generateSigningKey('RS256')];
  const discovery: Record<string, unknown> = {};
  const status = { discovery: 200, jwks: 200 };
  const hits = { discovery: 0, jwks: 0 };
  const jwksHeaders: Record<string, string> = { 'cache-control': 'public, max-age=3600' };
  let issuer = '';
  const server = await startHttpsServer(ca, (req, res) => {
    if (req.url === '/.well-known/openid-configuration') {
      hits.discovery++;
      return send(res, status.discovery, {
        issuer, jwks_uri: `${issuer}/openid/v1/jwks`, response_types_supported: ['id_token'], subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'], ...discovery,
      });
    }
    if (req.url === '/openid/v1/jwks') {
      hits.jwks++;
      return send(res, status.jwks, { keys: keys.map((k) => ({ ...k.publicJwk, use: 'sig' })) }, jwksHeaders);
    }
    send(res, 404, { error: 'not found' });
  });
  issuer = server.url;
  const result: ServiceAccountIssuer = {
    ...server,
    issuer,
    jwksUri: `${issuer}/openid/v1/jwks`,
    keys,
    discovery,
    status,
    jwksHeaders,
    hits,
    async rotate(opts = {}) {
      const key = await generateSigningKey(opts.alg ?? 'RS256');
      if (opts.retire) keys.splice(0, keys.length);
      keys.push(key);
      return key;
    },
    async mintServiceAccountToken(opts) {
      const key = opts.key ?? keys[keys.length - 1]!;
      const iat = opts.iat ?? nowSeconds();
      const sub = opts.sub ?? 'system:serviceaccount:default:default';
      const [, namespace = 'default', name = 'default'] = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(sub) ?? [];
      const claims: Record<string, unknown> = {
        iss: issuer, sub, aud: opts.aud, exp: opts.exp ?? iat + 600, iat, nbf: opts.nbf ?? iat,
        'kubernetes.io': { namespace, serviceaccount: { name, uid: '00000000-0000-4000-8000-000000000001' } },
        ...opts.claims,
      };
      for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
      const kid = opts.kid === null ? undefined : (opts.kid ?? key.kid);
      return signJws({ alg: opts.alg ?? key.alg, ...(kid !== undefined ? { kid } : {}) }, claims, key.privateKey);
    },
  };
  return result;
}

/** Writes `content` to a file in the CA's folder (removed with it); its path. */
export function writeTestFile(ca: TestCa, name: string, content: string): string {
  const file = path.join(ca.dir, name);
  writeFileSync(file, content);
  return file;
}
