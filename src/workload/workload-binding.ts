// A client's workload credential as the admin API takes it (spiffe_id, federated_subject,
// tls_client_auth_*, self_signed_certificates), turned into the WorkloadBinding stored with the client,
// and the rule that keeps "matched to exactly one client" true: two active clients' bindings must not
// both match one credential.
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { printableTextProblem, uriTextProblem } from '../input/printable-text.js';
import { parseSpiffePattern, type SpiffePattern } from './spiffe-id.js';
import { subjectDnProblem, x5tS256 } from './x509.js';
import type { RequiredClaims, TokenBinding, WorkloadBinding } from './types.js';

export class WorkloadInputError extends Error {
  override name = 'WorkloadInputError';
}

/** The admin API's names of the workload credentials (RFC 8705 names for the TLS ones). */
export const WORKLOAD_MEMBERS = [
  'spiffe_id', 'federated_subject',
  'tls_client_auth_subject_dn', 'tls_client_auth_san_dns', 'tls_client_auth_san_uri', 'tls_client_auth_san_ip', 'tls_client_auth_san_email',
  'self_signed_certificates',
] as const;

/** bounds on required claims: enough for GitHub's repository + ref + environment + workflow, not a payload */
export const MAX_REQUIRED_CLAIMS = 16;
export const MAX_CLAIM_NAME = 100;
export const MAX_CLAIM_VALUE = 500;
/** a federated JWT's sub (Kubernetes: system:serviceaccount:ns:name; GitHub: repo:org/repo:ref:...) */
export const MAX_SUBJECT = 1000;
export const MAX_SELF_SIGNED_CERTIFICATES = 10;
const MAX_PEM = 16_384;
const MAX_DN = 1000;
/** RFC 1035 names (labels of letters, digits, hyphens; underscores tolerated), no trailing dot */
const DNS_NAME = /^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/;
/** an rfc822Name SAN: local@domain, printable ASCII, no spaces */
const EMAIL = /^[\x21-\x3f\x41-\x7e]{1,64}@[A-Za-z0-9.-]{1,253}$/;

/** token_endpoint_auth_method as clientView shows it, by kind (documented in the README's workload section) */
export const AUTH_METHOD_OF: Record<WorkloadBinding['kind'], string> = {
  spiffe: 'spiffe_jwt',
  federated: 'federated_jwt',
  tls: 'tls_client_auth',
  'self-signed-tls': 'self_signed_tls_client_auth',
};

function fail(message: string): never {
  throw new WorkloadInputError(message);
}

function text(value: unknown, field: string, max: number): string {
  const problem = printableTextProblem(value, field, max);
  if (problem) fail(problem);
  if ((value as string).trim() !== value) fail(`${field} must not start or end with spaces (it is compared exactly)`);
  return value as string;
}

export function parseRequiredClaims(value: unknown): RequiredClaims {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) fail('required_claims must be an object of claim names to string values, e.g. {"repository": "org/repo"}');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > MAX_REQUIRED_CLAIMS) fail(`required_claims may name at most ${MAX_REQUIRED_CLAIMS} claims`);
  const claims: Record<string, string> = {};
  for (const [name, v] of entries) {
    if (!/^[\x21-\x7e]{1,100}$/.test(name) || name.length > MAX_CLAIM_NAME) fail(`required_claims: a claim name is 1 to ${MAX_CLAIM_NAME} printable ASCII characters without spaces, got ${JSON.stringify(name.slice(0, 40))}`);
    // the claims an assertion's identity rests on are Sigil's to check, not the admin's to relax
    if (['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti'].includes(name)) fail(`required_claims: ${name} is checked by Sigil itself and cannot be required here`);
    if (typeof v !== 'string') fail(`required_claims: the value of ${name} must be a string`);
    claims[name] = text(v, `required_claims.${name}`, MAX_CLAIM_VALUE);
  }
  return Object.freeze(claims);
}

function parseCertificates(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_SELF_SIGNED_CERTIFICATES) {
    fail(`self_signed_certificates must be a list of 1 to ${MAX_SELF_SIGNED_CERTIFICATES} PEM certificates`);
  }
  const thumbprints = value.map((pem, i) => {
    if (typeof pem !== 'string' || pem.length > MAX_PEM || !pem.includes('-----BEGIN CERTIFICATE-----')) fail(`self_signed_certificates[${i}] must be one PEM certificate (-----BEGIN CERTIFICATE-----)`);
    if (/PRIVATE KEY/.test(pem)) fail(`self_signed_certificates[${i}] holds a private key: send only the certificate`);
    if (pem.split('-----BEGIN CERTIFICATE-----').length > 2) fail(`self_signed_certificates[${i}] holds several certificates: give each as its own item`);
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      fail(`self_signed_certificates[${i}] is not a readable X.509 certificate`);
    }
    return x5tS256(cert);
  });
  return [...new Set(thumbprints)];
}

function parseTls(b: Record<string, unknown>, given: string): WorkloadBinding {
  const v = b[given];
  switch (given) {
    case 'tls_client_auth_subject_dn': {
      // a DN certificate-auth.ts could not parse would never match: refused now, not at every request
      const dn = text(v, given, MAX_DN);
      const problem = subjectDnProblem(dn);
      if (problem) fail(`${given}: ${problem}`);
      return { kind: 'tls', subjectDn: dn };
    }
    case 'tls_client_auth_san_dns': {
      if (typeof v !== 'string' || !DNS_NAME.test(v)) fail(`${given} must be a DNS name such as api.example.org`);
      return { kind: 'tls', sanDns: v.toLowerCase() };
    }
    case 'tls_client_auth_san_uri': {
      const problem = uriTextProblem(v, given);
      if (problem) fail(problem);
      if (!URL.canParse(v as string) || (v as string).includes('#')) fail(`${given} must be an absolute URI without a fragment`);
      return { kind: 'tls', sanUri: v as string };
    }
    case 'tls_client_auth_san_ip': {
      if (typeof v !== 'string' || !isIP(v)) fail(`${given} must be an IPv4 or IPv6 address`);
      // one spelling per address, as the certificate check will compare it
      return { kind: 'tls', sanIp: ipaddr.process(v).toString() };
    }
    default: {
      if (typeof v !== 'string' || !EMAIL.test(v)) fail(`${given} must be an e-mail address (local@domain)`);
      return { kind: 'tls', sanEmail: v };
    }
  }
}

/**
 * The workload credential of a new client's body, or undefined when it has none (then it must have
 * jwks or jwks_uri; the caller checks exactly one was given overall). `token_binding` is parsed here
 * too, since what it may be depends on the credential.
 */
export function parseWorkloadBinding(b: Record<string, unknown>): { workload: WorkloadBinding | undefined; tokenBinding: TokenBinding } {
  const given = WORKLOAD_MEMBERS.filter((m) => b[m] !== undefined);
  if (given.length > 1) fail(`give exactly one credential; got ${given.join(' and ')}`);
  if (b.required_claims !== undefined && given[0] !== 'federated_subject') fail('required_claims go with federated_subject only');
  let workload: WorkloadBinding | undefined;
  const which = given[0];
  if (which === 'spiffe_id') {
    const parsed = parseSpiffePattern(b.spiffe_id);
    if (!parsed.ok) fail(`spiffe_id: ${parsed.problem}`);
    workload = { kind: 'spiffe', spiffeId: parsed.value.pattern };
  } else if (which === 'federated_subject') {
    const fs = b.federated_subject as Record<string, unknown> | null;
    if (!fs || typeof fs !== 'object' || Array.isArray(fs) || Object.keys(fs).some((k) => k !== 'issuer' && k !== 'subject')) {
      fail('federated_subject must be an object { "issuer": URL, "subject": SUB }');
    }
    const issuer = fs.issuer;
    if (typeof issuer !== 'string' || uriTextProblem(issuer, 'issuer') || !URL.canParse(issuer)) fail('federated_subject.issuer must be the URL of a configured federation');
    workload = { kind: 'federated', issuer, subject: text(fs.subject, 'federated_subject.subject', MAX_SUBJECT), claims: parseRequiredClaims(b.required_claims) };
  } else if (which === 'self_signed_certificates') {
    workload = { kind: 'self-signed-tls', thumbprints: parseCertificates(b.self_signed_certificates) };
  } else if (which !== undefined) {
    workload = parseTls(b, which);
  }
  const tokenBinding = b.token_binding ?? 'dpop';
  if (tokenBinding !== 'dpop' && tokenBinding !== 'mtls') fail('token_binding must be "dpop" or "mtls"');
  if (tokenBinding === 'mtls' && !(workload && workload.kind !== 'federated')) {
    // cnf.x5t#S256 names the certificate the client authenticated with: only certificate-capable clients have one
    fail('token_binding "mtls" needs a client that presents a certificate: spiffe_id (X.509-SVID), tls_client_auth_* or self_signed_certificates');
  }
  return { workload, tokenBinding };
}

/** Whether two SPIFFE patterns can match one ID: exact = exact, an exact ID under a prefix, a prefix within a prefix. */
export function spiffePatternsOverlap(a: SpiffePattern, b: SpiffePattern): boolean {
  if (a.trustDomain !== b.trustDomain) return false;
  const under = (path: string, prefix: string) => path.startsWith(`${prefix}/`);
  if (!a.prefix && !b.prefix) return a.path === b.path;
  if (a.prefix && b.prefix) return a.path === b.path || under(a.path, b.path) || under(b.path, a.path);
  const [exact, prefix] = a.prefix ? [b, a] : [a, b];
  return under(exact.path, prefix.path);
}

/**
 * Whether one federated JWT could match both bindings: same issuer and subject, and no claim that both
 * require with different values (a JWT carrying the union of both claim sets matches both). Stricter
 * than "identical": {repository: x} and {ref: y} overlap, since a token with both claims matches both.
 */
export function federatedBindingsOverlap(a: { issuer: string; subject: string; claims: RequiredClaims }, b: { issuer: string; subject: string; claims: RequiredClaims }): boolean {
  if (a.issuer !== b.issuer || a.subject !== b.subject) return false;
  return !Object.entries(a.claims).some(([name, value]) => Object.hasOwn(b.claims, name) && b.claims[name] !== value);
}

/** Whether two stored bindings overlap (TLS and self-signed clients name their client_id on the request, so they never clash). */
export function bindingsOverlap(a: WorkloadBinding, b: WorkloadBinding): boolean {
  if (a.kind === 'spiffe' && b.kind === 'spiffe') {
    const pa = parseSpiffePattern(a.spiffeId);
    const pb = parseSpiffePattern(b.spiffeId);
    return pa.ok && pb.ok && spiffePatternsOverlap(pa.value, pb.value);
  }
  if (a.kind === 'federated' && b.kind === 'federated') return federatedBindingsOverlap(a, b);
  return false;
}

/** The trust domain a binding depends on, or the federation issuer: what must be configured for it to work. */
export function bindingTrust(w: WorkloadBinding): { trustDomain: string } | { federation: string } | undefined {
  if (w.kind === 'spiffe') {
    const p = parseSpiffePattern(w.spiffeId);
    return p.ok ? { trustDomain: p.value.trustDomain } : undefined;
  }
  if (w.kind === 'federated') return { federation: w.issuer };
  return undefined;
}

/** The members clientView shows for a binding (snake_case, as the admin API and `--json` print them). */
export function bindingView(w: WorkloadBinding | undefined): Record<string, unknown> {
  if (!w) return {};
  switch (w.kind) {
    case 'spiffe':
      return { spiffe_id: w.spiffeId };
    case 'federated':
      return { federated_subject: { issuer: w.issuer, subject: w.subject }, required_claims: { ...w.claims } };
    case 'tls':
      return Object.fromEntries(Object.entries({
        tls_client_auth_subject_dn: w.subjectDn, tls_client_auth_san_dns: w.sanDns, tls_client_auth_san_uri: w.sanUri,
        tls_client_auth_san_ip: w.sanIp, tls_client_auth_san_email: w.sanEmail,
      }).filter(([, v]) => v !== undefined));
    case 'self-signed-tls':
      return { self_signed_certificate_thumbprints: [...w.thumbprints] };
  }
}
