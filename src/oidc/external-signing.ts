// oidc-provider's features.externalSigningSupport: a key whose signature Sigil makes itself
// (keys/node-signing-key.ts extends it).
export { ExternalSigningKey } from 'oidc-provider';
