// Sigil's own keys for one server: the signing-key ring every instance follows, the signer of status
// list tokens (always the ring's active key), and the shared secrets of DPoP nonces and cookies.
import { importJWK, type CryptoKey } from 'jose';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { loadKek } from '../keys/key-encryption.js';
import { KeyRing, type KeySnapshot } from '../keys/key-ring.js';
import { sharedSecret } from '../keys/signing-keys.js';
import { statusTokenLifetime, type StatusListSigner } from '../revocation/status-list.js';
import type { Db } from '../storage/db.js';
import type { FastStore } from '../storage/fast-store.js';

export interface Keys {
  keyRing: KeyRing;
  /** the active key, imported for signing status list tokens */
  statusSigner: () => StatusListSigner;
  nonceSecret: Buffer;
  cookieKey: string;
  close(): void;
}

async function signerOf(keys: KeySnapshot): Promise<StatusListSigner> {
  const { kid, alg, privateJwk } = keys.active;
  return { kid, alg, key: (await importJWK(privateJwk, alg)) as CryptoKey };
}

export async function openKeys(config: Config, db: Db, fast: FastStore, log: Logger): Promise<Keys> {
  // how long every instance has to notice a staged key before it may sign (a bus message is
  // usually instant; the periodic reload is the fallback)
  const keyPropagation = Math.min(30, Math.max(1, config.jwksMaxAgeSeconds));
  const kek = await loadKek({ kek: config.kek, keysDir: config.keysDir }, log);
  const keyRing = new KeyRing(db, kek, config.signingAlg, {
    jwksMaxAgeSeconds: config.jwksMaxAgeSeconds,
    propagationSeconds: keyPropagation,
    // what a key signed (access tokens, status list tokens) must stay verifiable until it expires
    retireAfterSeconds: Math.max(config.accessTokenTtl, statusTokenLifetime(config.statusListTtlSeconds)) + keyPropagation,
  }, fast, log);
  await keyRing.start();
  let statusSigner = await signerOf(keyRing.current);
  keyRing.onChange((s) => void signerOf(s).then((signer) => (statusSigner = signer)));
  return {
    keyRing,
    statusSigner: () => statusSigner,
    nonceSecret: await sharedSecret(db, 'dpop_nonce'),
    cookieKey: (await sharedSecret(db, 'cookie')).toString('base64url'),
    close: () => keyRing.stop(),
  };
}
