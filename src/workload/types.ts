// Workload identity (issue 13): the shapes every part of it shares. A workload authenticates with a
// credential its platform already gave it (a SPIFFE JWT-SVID or X.509-SVID, a Kubernetes
// service-account token, a CI job's OIDC token, a client certificate) instead of a key registered
// with Sigil. Who Sigil trusts to vouch for workloads (trust domains, federations) is configured by the
// admin, stored in Postgres and announced to every instance on the bus.
import type { X509Certificate } from 'node:crypto';
import type { JWK } from 'jose';
import type { ClientRecord } from '../clients/client-store.js';
import type { SpiffeId } from './spiffe-id.js';

/** A SPIFFE trust domain whose bundle endpoint Sigil polls. */
export interface TrustDomain {
  /** "example.org": the authority of spiffe://example.org/... */
  name: string;
  /** the https URL of its SPIFFE bundle (a JWKS whose keys have use jwt-svid / x509-svid) */
  bundleEndpoint: string;
  createdBy: string;
  createdAt: Date;
  updatedAt: Date;
}

/** A trusted external JWT issuer (Kubernetes service accounts, GitHub Actions, GitLab CI, cloud workload identity). */
export interface Federation {
  /** its JWTs' `iss`, exactly */
  issuer: string;
  /** undefined: found by OIDC discovery (`${issuer}/.well-known/openid-configuration`) */
  jwksUri?: string;
  /** undefined: a JWT's aud must be Sigil's issuer; else it may be this value instead */
  audience?: string;
  /** the longest lifetime (exp - iat) accepted */
  maxLifetimeSeconds: number;
  createdBy: string;
  createdAt: Date;
  updatedAt: Date;
}

/** Required claim values of a federated JWT (e.g. GitHub's repository and ref): each claim equal to its string. */
export type RequiredClaims = Readonly<Record<string, string>>;

/**
 * How a client without registered keys authenticates. Stored as the `workload` JSON column of
 * `clients` (migrations/010_workload_identity.sql), in this very shape.
 */
export type WorkloadBinding =
  /** a JWT-SVID (jwt-spiffe assertion) or X.509-SVID (mTLS) for this SPIFFE ID; a trailing `/*` matches a path-segment prefix */
  | { kind: 'spiffe'; spiffeId: string }
  /** a JWT from a configured federation whose iss is `issuer` and sub is `subject`, with `claims` matched */
  | { kind: 'federated'; issuer: string; subject: string; claims: RequiredClaims }
  /** RFC 8705 tls_client_auth: a certificate chaining to TLS_CLIENT_CA_FILE whose subject DN or one SAN is this value */
  | { kind: 'tls'; subjectDn?: string; sanDns?: string; sanUri?: string; sanIp?: string; sanEmail?: string }
  /** RFC 8705 self_signed_tls_client_auth: one of these certificates (base64url SHA-256 of the DER, x5t#S256) */
  | { kind: 'self-signed-tls'; thumbprints: string[] };

export type WorkloadKind = WorkloadBinding['kind'];

/** What a client's access tokens are bound to: its DPoP key (cnf.jkt) or its TLS certificate (cnf.x5t#S256). */
export type TokenBinding = 'dpop' | 'mtls';

/** The answer of a trust lookup: the value, or a sentence saying why it cannot be used now (fail closed). */
export type TrustAnswer<T> = { ok: true; value: T } | { ok: false; problem: string };

/**
 * What the authenticators ask of the trust configuration (src/workload/trust.ts implements it). Every
 * answer is current: a removed trust domain or federation is unknown here within a second on every
 * instance, and keys past their bound without a successful refresh are refused, not used.
 */
export interface WorkloadTrust {
  /** the JWT-SVID authorities (bundle keys with use jwt-svid) of a configured trust domain */
  jwtAuthorities(trustDomain: string): Promise<TrustAnswer<JWK[]>>;
  /** the X.509-SVID authorities (bundle keys with use x509-svid, their x5c[0]) of a configured trust domain */
  x509Authorities(trustDomain: string): Promise<TrustAnswer<X509Certificate[]>>;
  /** a configured federation, or undefined */
  federation(issuer: string): Promise<Federation | undefined>;
  /**
   * A federation's current signing keys. `kid`: the kid the JWT names; when no current key has it, the
   * keys are fetched again (at most once per minimum interval), as for a client's jwks_uri.
   */
  federationKeys(issuer: string, kid: string | undefined): Promise<TrustAnswer<JWK[]>>;
}

/** The client certificate a request came with: from Sigil's own TLS, or a configured proxy's header. */
export interface PresentedCertificate {
  certificate: X509Certificate;
  /** the certificates after it, as the client sent them (own TLS only; a proxy header carries the leaf) */
  chain: X509Certificate[];
  /** base64url SHA-256 of the leaf's DER: cnf.x5t#S256 (RFC 8705 §3.1) */
  thumbprint: string;
  /** 'tls': Sigil's own listener; 'proxy': a header from a configured proxy address */
  via: 'tls' | 'proxy';
}

/** The client_assertion_type of a JWT-SVID (draft-ietf-oauth-spiffe-client-auth). */
export const JWT_SPIFFE_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-spiffe';
/** RFC 7523's, used by private_key_jwt and by federated JWTs alike (told apart by their iss). */
export const JWT_BEARER_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/**
 * How a workload-bound client authenticated on this request, decided by Sigil before oidc-provider
 * sees the request (src/workload/workload-auth.ts), and the only thing that lets oidc-provider accept
 * it (src/oidc/provider.ts: such clients are `tls_client_auth` to oidc-provider, and its mTLS hooks
 * answer from this verdict alone, so without one they fail closed).
 */
export interface WorkloadVerdict {
  clientId: string;
  method: 'spiffe_jwt' | 'federated_jwt' | 'spiffe_x509' | 'tls_client_auth' | 'self_signed_tls_client_auth';
  /** the workload identity that was proven: a SPIFFE ID, `iss sub` of a federated JWT, a certificate subject */
  identity: string;
  /** the certificate the request came with, when there is one (a token may be bound to it) */
  certificate?: PresentedCertificate;
}

/**
 * Client certificates (src/workload/client-certificate.ts and certificate-auth.ts implement it): where a
 * request's certificate comes from, and how it authenticates a certificate-bound workload client.
 */
export interface CertificateAuthenticator {
  /**
   * Authenticates `client` (workload kind tls, self-signed-tls, or spiffe with an X.509-SVID) with the
   * certificate its request came with: the verdict, or a sentence saying why not (401 invalid_client).
   */
  authenticate(client: { clientId: string; workload?: WorkloadBinding }, presented: PresentedCertificate): Promise<WorkloadVerdict | { problem: string }>;
}

/**
 * The trust configuration as the fetchers read it (src/workload/trust-store.ts implements it over
 * Postgres and the bus; src/workload/trust.ts consumes it).
 */
export interface TrustConfig {
  trustDomain(name: string): Promise<TrustDomain | undefined>;
  federation(issuer: string): Promise<Federation | undefined>;
  /** called after any change is seen (add/remove/edit) on any instance, with what changed */
  onChange(listener: (change: { kind: 'trust-domain' | 'federation'; key: string }) => void): void;
}

/** The workload-bound clients as the authenticators find them (src/workload/workload-clients.ts). */
export interface WorkloadClientIndex {
  /** active clients whose SPIFFE pattern matches `id` (0, 1, or — only if data is inconsistent — more) */
  bySpiffeId(id: SpiffeId): Promise<ClientRecord[]>;
  /** active clients bound to (issuer, subject) */
  byFederatedSubject(issuer: string, subject: string): Promise<ClientRecord[]>;
}
