// A service getting a DPoP-bound access token from Sigil: the README quickstart, end to end.
//
//   node dist/scripts/example-client.js keygen --out client.private.jwk.json --public-out client.jwks.json [--alg ES256|EdDSA]
//   npx sigil clients create --name my-service --jwks-file client.jwks.json --scope "orders:read" --audience https://api.example.com/orders
//   node dist/scripts/example-client.js --client-id ID --key-file client.private.jwk.json [--scope "orders:read"]
//       [--resource URI] [--url http://localhost:3000 (or SIGIL_URL)] [--dpop-key-file F] [--print-token]
//   node dist/scripts/example-client.js call API_URL --client-id ID --key-file client.private.jwk.json [--scope S]
//       [--method GET] [--session FILE]: calls an API with the token and a fresh DPoP proof; prints the answer.
//       With --session, the token and its DPoP key are kept in FILE (0600) and used again until they expire.
//   A workload with no registered key (README "Workload identity") authenticates with what its platform
//   gave it instead of --key-file (--client-id optional), in both modes:
//       --svid-file F             a JWT-SVID (e.g. written by spire-agent), sent as a jwt-spiffe assertion
//       --federated-token-file F  a Kubernetes service-account token, a CI job's OIDC token... (jwt-bearer)
//   Each file is read again for every token request: platforms rotate them.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { calculateJwkThumbprint, createRemoteJWKSet, jwtVerify, type JWK } from 'jose';
import { discover, dpopProof, generateClientKey, keyPairFromPrivateJwk, requestToken, type KeyAlg, type TokenResponse } from '../src/client/oauth-client.js';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'client-id': { type: 'string' },
    'key-file': { type: 'string' },
    'dpop-key-file': { type: 'string' },
    'svid-file': { type: 'string' },
    'federated-token-file': { type: 'string' },
    scope: { type: 'string' },
    resource: { type: 'string' },
    url: { type: 'string', default: process.env.SIGIL_URL ?? 'http://localhost:3000' },
    'print-token': { type: 'boolean', default: false },
    out: { type: 'string' },
    'public-out': { type: 'string' },
    alg: { type: 'string', default: 'ES256' },
    method: { type: 'string', default: 'GET' },
    session: { type: 'string' },
  },
});

async function keygen(): Promise<void> {
  if (!opt.out || !opt['public-out']) throw new Error('keygen needs --out (private JWK) and --public-out (public JWKS)');
  if (opt.alg !== 'ES256' && opt.alg !== 'EdDSA') throw new Error('--alg must be ES256 or EdDSA');
  if (existsSync(opt.out)) throw new Error(`${opt.out} exists; refusing to overwrite a private key`);
  const { privateJwk, publicJwks } = await generateClientKey(opt.alg as KeyAlg);
  writeFileSync(opt.out, `${JSON.stringify(privateJwk, null, 2)}\n`, { mode: 0o600, flag: 'wx' }); // owner-only, never overwritten
  writeFileSync(opt['public-out'], `${JSON.stringify(publicJwks, null, 2)}\n`);
  console.log(JSON.stringify({ kid: privateJwk.kid, alg: opt.alg, private_key: opt.out, public_jwks: opt['public-out'] }, null, 2));
}

const readJwk = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as JWK;

/** A verified DPoP-bound token, the private JWK of the key it is bound to, and what to print of it. */
async function obtainToken(): Promise<{ token: TokenResponse; dpopJwk: JWK; verified: Record<string, unknown> }> {
  const workloadFile = opt['svid-file'] ?? opt['federated-token-file'];
  if (opt['svid-file'] && opt['federated-token-file']) throw new Error('give one of --svid-file and --federated-token-file');
  if (workloadFile && opt['key-file']) throw new Error('a workload authenticates with its credential file or with --key-file, not both');
  if (!workloadFile && (!opt['client-id'] || !opt['key-file'])) {
    throw new Error('give --client-id and --key-file (or run `keygen` first), or a workload credential: --svid-file / --federated-token-file');
  }

  // 1. Discover the endpoints (RFC 8414); nothing is hard-coded but the server's address.
  const meta = await discover(opt.url);
  // Requests go to --url; proofs and assertions name the issuer's URLs (they differ behind a balancer).
  const local = (u: string) => new URL(new URL(u).pathname, opt.url).toString();

  // 2. The client's own key (or its workload credential) authenticates it; a DPoP key (ephemeral
  //    unless given) binds the token.
  const clientKey = opt['key-file'] ? await keyPairFromPrivateJwk(readJwk(opt['key-file'])) : undefined;
  const assertion = workloadFile
    ? { type: opt['svid-file'] ? 'jwt-spiffe' as const : 'jwt-bearer' as const, value: () => readFileSync(workloadFile, 'utf8') }
    : undefined;
  const dpopJwk = opt['dpop-key-file'] ? readJwk(opt['dpop-key-file']) : (await generateClientKey('ES256')).privateJwk;
  const dpopKey = await keyPairFromPrivateJwk(dpopJwk);

  // 3. client_credentials with private_key_jwt + DPoP; requestToken retries once if the server asks for a nonce.
  const token = await requestToken({
    tokenEndpoint: local(meta.token_endpoint),
    htu: meta.token_endpoint,
    issuer: meta.issuer,
    clientId: opt['client-id'],
    clientKey,
    assertion,
    dpopKey,
    scope: opt.scope,
    resource: opt.resource,
  });

  // 4. Check the token the way a resource server would: signature against jwks_uri, issuer, type, key binding.
  const { payload, protectedHeader } = await jwtVerify(token.access_token, createRemoteJWKSet(new URL(local(meta.jwks_uri))), {
    issuer: meta.issuer,
    typ: 'at+jwt',
  });
  const cnf = payload.cnf as { jkt?: string } | undefined;
  if (cnf?.jkt !== (await calculateJwkThumbprint(dpopKey.publicJwk))) throw new Error('the token is not bound to our DPoP key');

  return { token, dpopJwk, verified: { header: protectedHeader, claims: payload } };
}

async function getToken(): Promise<void> {
  const { token, verified } = await obtainToken();
  console.log(JSON.stringify({
    token_type: token.token_type,
    expires_in: token.expires_in,
    scope: token.scope,
    ...verified,
    ...(opt['print-token'] ? { access_token: token.access_token } : {}),
  }, null, 2));
}

interface Session {
  access_token: string;
  /** epoch seconds */
  expires_at: number;
  dpop_key: JWK;
}

/** Calls an API as a resource server expects: the token, and a proof made for this very request. */
async function callApi(target: string | undefined): Promise<void> {
  if (!target) throw new Error('call needs the API URL, e.g. call http://localhost:4000/orders');
  const now = Math.floor(Date.now() / 1000);
  let session = opt.session && existsSync(opt.session) ? JSON.parse(readFileSync(opt.session, 'utf8')) as Session : undefined;
  if (!session || session.expires_at <= now + 5) {
    const { token, dpopJwk } = await obtainToken();
    session = { access_token: token.access_token, expires_at: now + token.expires_in, dpop_key: dpopJwk };
    // the DPoP private key is in it: owner-only
    if (opt.session) writeFileSync(opt.session, `${JSON.stringify(session, null, 2)}\n`, { mode: 0o600 });
  }
  const dpopKey = await keyPairFromPrivateJwk(session.dpop_key);
  const url = new URL(target);
  // htu: the URL without query and fragment (RFC 9449 §4.2); a new proof, and jti, for every call
  const proof = await dpopProof(dpopKey, opt.method, `${url.origin}${url.pathname}`, { accessToken: session.access_token });
  const res = await fetch(url, { method: opt.method, headers: { authorization: `DPoP ${session.access_token}`, dpop: proof } });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: printed as text
  }
  const challenge = res.headers.get('www-authenticate');
  console.log(JSON.stringify({ status: res.status, ...(challenge ? { www_authenticate: challenge } : {}), body }, null, 2));
  if (!res.ok) process.exitCode = 1;
}

(positionals[0] === 'keygen' ? keygen() : positionals[0] === 'call' ? callApi(positionals[1]) : getToken()).catch((err: Error) => {
  const cause = err.cause as { code?: string; message?: string } | undefined; // fetch hides the socket error here
  console.error(`example-client: ${err.message}${cause ? ` (${cause.code ?? cause.message})` : ''}`);
  process.exit(1);
});
