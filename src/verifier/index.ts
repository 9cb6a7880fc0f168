// sigil/verifier: Sigil's access tokens checked where the API runs. Loads jose (through the
// introspection client) and node builtins only: none of the server, and ioredis only when a Redis
// replay store is created.
export { createVerifier, type AccessTokenClaims, type HeadersLike, type RequestLike, type Verifier, type VerifierOptions, type VerifyOptions } from './verifier.js';
export { VerifierError, type VerifierErrorCode } from './errors.js';
export { MemoryReplayStore, type ClaimResult, type ReplayStore } from './replay.js';
export { createRedisReplayStore, RedisReplayStore, type RedisReplayStoreOptions } from './redis-replay.js';
export type { IntrospectionClient } from './introspection.js';
export { type PublicUrlOptions, expressVerifier, fastifyVerifier, fromNodeRequest, koaVerifier, sendRefusal, verifyFetchRequest, verifyNodeRequest } from './adapters.js';
export { certificateThumbprint, type CertificateInput } from './certificate.js';
