// Sigil's signing keys as oidc-provider sees them (features.externalSigningSupport): the signature
// is made with node:crypto. An ES256 or EdDSA signature takes ~40 µs, so it is made synchronously:
// a WebCrypto job adds its setup and a hop to the libuv pool and back, which costs more than the
// signing. A PS256 (RSA 3072) signature takes milliseconds and goes to the pool, off the event loop.
import { constants, createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { ExternalSigningKey } from '../oidc/external-signing.js';
import type { SigningAlg } from '../config.js';

type Signer = (data: Uint8Array, key: KeyObject) => Buffer | Promise<Buffer>;

const SIGNERS: Record<SigningAlg, Signer> = {
  ES256: (data, key) => sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }),
  EdDSA: (data, key) => sign(null, data, key),
  PS256: (data, key) => new Promise((resolve, reject) => {
    sign('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, (err, signature) => (err ? reject(err) : resolve(signature)));
  }),
};

export class NodeSigningKey extends ExternalSigningKey {
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;
  readonly #sign: Signer;

  constructor(privateJwk: JWK, alg: SigningAlg) {
    super();
    if (!privateJwk.kid) throw new Error('a signing key needs a kid');
    // ExternalSigningKey has setters for both; its published typings declare them read-only
    const settable = this as unknown as { kid: string; alg: string };
    settable.kid = privateJwk.kid;
    settable.alg = alg;
    this.#privateKey = createPrivateKey({ key: privateJwk as Record<string, string>, format: 'jwk' });
    this.#publicKey = createPublicKey(this.#privateKey);
    this.#sign = SIGNERS[alg];
  }

  override keyObject(): KeyObject {
    return this.#publicKey;
  }

  override async sign(data: Uint8Array): Promise<Uint8Array> {
    return this.#sign(data, this.#privateKey);
  }
}
