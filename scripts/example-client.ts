// A service getting a DPoP-bound access token from Sigil: the README quickstart, end to end.
//
//   node dist/scripts/example-client.js keygen --out client.private.jwk.json --public-out client.jwks.json [--alg ES256|EdDSA]
//   npx sigil clients create --name my-service --jwks-file client.jwks.json --scope "orders:read" --audience https://api.example.com/orders
//   node dist/scripts/example-client.js --client-id ID --key-file client.private.jwk.json [--scope "orders:read"]
//       [--resource URI] [--url http://localhost:3000 (or SIGIL_URL)] [--dpop-key-file F] [--print-token]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { calculateJwkThumbprint, createRemoteJWKSet, jwtVerify, type JWK } from 'jose';
import { discover, generateClientKey, keyPairFromPrivateJwk, requestToken, type KeyAlg } from '../src/client/oauth-client.js';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'client-id': { type: 'string' },
    'key-file': { type: 'string' },
    'dpop-key-file': { type: 'string' },
    scope: { type: 'string' },
    resource: { type: 'string' },
    url: { type: 'string', default: process.env.SIGIL_URL ?? 'http://localhost:3000' },
    'print-token': { type: 'boolean', default: false },
    out: { type: 'string' },
    'public-out': { type: 'string' },
    alg: { type: 'string', default: 'ES256' },
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

async function getToken(): Promise<void> {
  if (!opt['client-id'] || !opt['key-file']) throw new Error('give --client-id and --key-file (or run `keygen` first)');
  const readKey = (file: string) => keyPairFromPrivateJwk(JSON.parse(readFileSync(file, 'utf8')) as JWK);

  // 1. Discover the endpoints (RFC 8414); nothing is hard-coded but the server's address.
  const meta = await discover(opt.url);
  // Requests go to --url; proofs and assertions name the issuer's URLs (they differ behind a balancer).
  const local = (u: string) => new URL(new URL(u).pathname, opt.url).toString();

  // 2. The client's own key authenticates it; a DPoP key (ephemeral unless given) binds the token.
  const clientKey = await readKey(opt['key-file']);
  const dpopKey = opt['dpop-key-file'] ? await readKey(opt['dpop-key-file']) : await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);

  // 3. client_credentials with private_key_jwt + DPoP; requestToken retries once if the server asks for a nonce.
  const token = await requestToken({
    tokenEndpoint: local(meta.token_endpoint),
    htu: meta.token_endpoint,
    issuer: meta.issuer,
    clientId: opt['client-id'],
    clientKey,
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

  console.log(JSON.stringify({
    token_type: token.token_type,
    expires_in: token.expires_in,
    scope: token.scope,
    header: protectedHeader,
    claims: payload,
    ...(opt['print-token'] ? { access_token: token.access_token } : {}),
  }, null, 2));
}

(positionals[0] === 'keygen' ? keygen() : getToken()).catch((err: Error) => {
  const cause = err.cause as { code?: string; message?: string } | undefined; // fetch hides the socket error here
  console.error(`example-client: ${err.message}${cause ? ` (${cause.code ?? cause.message})` : ''}`);
  process.exit(1);
});
