// The crypto-only ceiling of one token: verify the client assertion (ES256), verify the DPoP proof
// (ES256), sign the access token (ES256). Run it pinned to one core (`taskset -c 0 node ceiling.js`);
// it prints one JSON line: tokens/s that core could issue if it did nothing but this crypto, by the
// wall clock and per CPU-second of this process (the latter holds on a busy, shared machine).
//  - webcrypto: crypto.subtle, as jose (and so oidc-provider) calls it, with many operations in flight
//  - nodeCrypto: synchronous node:crypto sign/verify, the cheapest way Node offers
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify, webcrypto } from 'node:crypto';

const seconds = Number(process.argv[2] ?? 3);
const INFLIGHT = 32;
// JWT-sized inputs (a proof's signing input is ~400 bytes, an access token's ~600)
const input = Buffer.from(randomBytes(450).toString('base64url'));

async function webcryptoRate(): Promise<{ wall: number; perCpuSecond: number }> {
  const subtle = webcrypto.subtle;
  const alg = { name: 'ECDSA', hash: 'SHA-256' };
  const kp = (await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  const sig = await subtle.sign(alg, kp.privateKey, input);
  const run = async (ms: number) => {
    let n = 0;
    const cpu = process.cpuUsage();
    const start = performance.now();
    const end = start + ms;
    await Promise.all(Array.from({ length: INFLIGHT }, async () => {
      while (performance.now() < end) {
        if (!(await subtle.verify(alg, kp.publicKey, sig, input))) throw new Error('verify failed');
        await subtle.verify(alg, kp.publicKey, sig, input);
        await subtle.sign(alg, kp.privateKey, input);
        n++;
      }
    }));
    return rates(n, start, cpu);
  };
  await run(300);
  return run(seconds * 1000);
}

function rates(n: number, start: number, cpu: NodeJS.CpuUsage): { wall: number; perCpuSecond: number } {
  const used = process.cpuUsage(cpu);
  return { wall: n / ((performance.now() - start) / 1000), perCpuSecond: n / ((used.user + used.system) / 1e6) };
}

function nodeCryptoRate(): { wall: number; perCpuSecond: number } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicKey = createPublicKey(privateKey);
  const opts = { dsaEncoding: 'ieee-p1363' as const };
  const sig = sign('sha256', input, { key: privateKey, ...opts });
  const run = (ms: number) => {
    let n = 0;
    const cpu = process.cpuUsage();
    const start = performance.now();
    while (performance.now() - start < ms) {
      verify('sha256', input, { key: publicKey, ...opts }, sig);
      verify('sha256', input, { key: publicKey, ...opts }, sig);
      sign('sha256', input, { key: privateKey, ...opts });
      n++;
    }
    return rates(n, start, cpu);
  };
  run(300);
  return run(seconds * 1000);
}

const web = await webcryptoRate();
const node = nodeCryptoRate();
process.stdout.write(`${JSON.stringify({
  webcrypto: Math.round(web.wall), nodeCrypto: Math.round(node.wall),
  webcryptoPerCpuSecond: Math.round(web.perCpuSecond), nodeCryptoPerCpuSecond: Math.round(node.perCpuSecond),
})}\n`);
