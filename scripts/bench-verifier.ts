// In-process verifications per second on one core: a DPoP-bound access token with a fresh proof per
// request, side by side in one run with
//   (a) the crypto ceiling of the same work: one ES256 verify of the proof, the proof key's RFC 7638
//       thumbprint and the token's SHA-256 (`ath`) — nothing else (the token's own signature is
//       checked once and remembered by its hash, which a verifier may do until the token expires);
//   (b) oauth4webapi's validateJwtAccessToken (which keeps no replay record and reads no status list).
// sigil/verifier does every check: token claims, proof, replay record (in memory), status list (cached;
// the change stream is off: nothing to hear in-process). The issuer is served from memory (no socket).
//
//   npm run bench:verifier -- --seconds 10
import { createHash, createPrivateKey, createPublicKey, randomUUID, sign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import * as oauth from 'oauth4webapi';
import { createVerifier } from '../src/verifier/index.js';

const ISSUER = 'https://sigil.bench.example';
const AUDIENCE = 'https://api.bench.example/orders';
const URL_ = 'https://api.bench.example/orders/1';
const STATUS_URI = `${ISSUER}/status-lists/1-0`;

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1] ?? 2) || 2;
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

async function main() {
  // the issuer: one ES256 signing key, its JWKS, a status list token, discovery
  const issuerKeys = await generateKeyPair('ES256', { extractable: true });
  const issuerJwk = { ...(await exportJWK(issuerKeys.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const now = Math.floor(Date.now() / 1000);
  const statusList = await new SignJWT({ ttl: 3600, status_list: { bits: 1, lst: deflateSync(new Uint8Array(1024)).toString('base64url') } })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'statuslist+jwt' })
    .setSubject(STATUS_URI).setIssuer(ISSUER).setIssuedAt(now).setExpirationTime(now + 7200).sign(issuerKeys.privateKey);
  const metadata = { issuer: ISSUER, jwks_uri: `${ISSUER}/jwks`, dpop_signing_alg_values_supported: ['ES256'], status_list_aggregation_endpoint: `${ISSUER}/status-lists` };
  const documents: Record<string, [string, string]> = {
    [`${ISSUER}/.well-known/oauth-authorization-server`]: [JSON.stringify(metadata), 'application/json'],
    [`${ISSUER}/jwks`]: [JSON.stringify({ keys: [issuerJwk] }), 'application/json'],
    [STATUS_URI]: [statusList, 'application/statuslist+jwt'],
  };
  const memoryFetch = async (input: string | URL | Request) => {
    const url = input instanceof Request ? input.url : String(input);
    const doc = documents[url];
    return doc ? new Response(doc[0], { headers: { 'content-type': doc[1], 'cache-control': 'max-age=3600' } }) : new Response('not found', { status: 404 });
  };

  // the client's DPoP key, and its token
  const dpop = await generateKeyPair('ES256', { extractable: true });
  const dpopJwk = await exportJWK(dpop.publicKey);
  const canonical = JSON.stringify({ crv: dpopJwk.crv, kty: 'EC', x: dpopJwk.x, y: dpopJwk.y });
  const jkt = createHash('sha256').update(canonical).digest('base64url');
  const token = await new SignJWT({ client_id: 'c1', scope: 'orders:read', cnf: { jkt }, status: { status_list: { idx: 7, uri: STATUS_URI } } })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' })
    .setIssuer(ISSUER).setSubject('c1').setAudience(AUDIENCE).setIssuedAt(now).setExpirationTime(now + 3600).setJti(randomUUID()).sign(issuerKeys.privateKey);
  const ath = createHash('sha256').update(token).digest('base64url');

  // fresh proofs, made before the clock starts (making them is the client's cost, not the API's)
  const privateKey: KeyObject = createPrivateKey({ key: { ...(await exportJWK(dpop.privateKey)) } as never, format: 'jwk' });
  const header = b64({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty: 'EC', crv: dpopJwk.crv, x: dpopJwk.x, y: dpopJwk.y } });
  const makeProof = () => {
    const input = `${header}.${b64({ htm: 'GET', htu: URL_, iat: Math.floor(Date.now() / 1000), jti: randomUUID(), ath })}`;
    return `${input}.${sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
  };
  const pool = 20_000;
  let proofs = Array.from({ length: pool }, makeProof);
  let madeAt = Date.now();
  const authorization = `DPoP ${token}`;

  const verify = createVerifier({ issuer: ISSUER, audience: AUDIENCE, fetch: memoryFetch, status: { events: false } });
  await verify.ready();
  const proofKey = createPublicKey({ key: JSON.parse(canonical) as never, format: 'jwk' });

  type Contender = { name: string; run(proof: string): Promise<unknown> | unknown; reset?(): void };
  let ours = verify;
  const contenders: Contender[] = [
    {
      name: 'crypto ceiling (ES256 verify + thumbprint + SHA-256)',
      run(proof) {
        const dot = proof.lastIndexOf('.');
        const ok = cryptoVerify('sha256', Buffer.from(proof.slice(0, dot)), { key: proofKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(proof.slice(dot + 1), 'base64url'));
        createHash('sha256').update(canonical).digest('base64url');
        createHash('sha256').update(token).digest('base64url');
        if (!ok) throw new Error('bad proof');
      },
    },
    {
      name: 'sigil/verifier (every check, replay record in memory)',
      run: (proof) => ours({ method: 'GET', url: URL_, headers: { authorization, dpop: proof } }),
      // each proof is one-time: a new verifier (warm) before a pass re-uses the pool
      reset() {
        void ours.close();
        ours = createVerifier({ issuer: ISSUER, audience: AUDIENCE, fetch: memoryFetch, status: { events: false } });
      },
    },
    {
      name: 'oauth4webapi validateJwtAccessToken',
      run: (proof) => oauth.validateJwtAccessToken(metadata, new Request(URL_, { headers: { authorization, dpop: proof } }), AUDIENCE, {
        [oauth.customFetch]: memoryFetch as never, requireDPoP: true,
      }),
    },
  ];

  // interleaved rounds, so that a slow moment of the machine hurts every contender alike
  const rounds = 3;
  const slice = (seconds * 1000) / (rounds * contenders.length);
  const totals = contenders.map(() => ({ ops: 0, ms: 0 }));
  for (const c of contenders) {
    c.reset?.();
    for (let i = 0; i < 200; i++) await c.run(proofs[i]!); // warm-up (JIT, caches)
  }
  for (let r = 0; r < rounds; r++) {
    // a proof may be at most 60 s old: long runs make new ones between rounds, off the clock
    if (Date.now() - madeAt > 30_000) {
      proofs = Array.from({ length: pool }, makeProof);
      madeAt = Date.now();
    }
    for (const [i, c] of contenders.entries()) {
      c.reset?.();
      if (c.reset) await c.run(proofs[pool - 1]!); // warm the new verifier's caches outside the clock
      let n = 0;
      const start = performance.now();
      let elapsed = 0;
      while (elapsed < slice && n < pool - 1) {
        for (let k = 0; k < 50 && n < pool - 1; k++) await c.run(proofs[n++]!);
        elapsed = performance.now() - start;
      }
      totals[i]!.ops += n;
      totals[i]!.ms += elapsed;
    }
  }
  await ours.close();
  await verify.close();
  const rate = totals.map((t) => (t.ops * 1000) / t.ms);
  console.log(`sigil/verifier bench: ${seconds} s in ${rounds} interleaved rounds, one core, DPoP-bound ES256 token, a fresh proof per request`);
  for (const [i, c] of contenders.entries()) console.log(`  ${c.name.padEnd(58)} ${rate[i]!.toFixed(0).padStart(8)} verifications/s`);
  console.log(`  sigil/verifier / crypto ceiling: ${(rate[1]! / rate[0]!).toFixed(2)} (goal >= 0.7)`);
  console.log(`  sigil/verifier / oauth4webapi:   ${(rate[1]! / rate[2]!).toFixed(2)} (goal >= 2)`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
