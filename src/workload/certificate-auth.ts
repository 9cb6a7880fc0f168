// Client authentication with a certificate (RFC 8705 §2 and the SPIFFE X.509-SVID): given the client
// a request names and the certificate it came with, the verdict or a sentence saying why not (which
// becomes the invalid_client description). Three kinds of binding:
//   tls              RFC 8705 §2.1 tls_client_auth: chains to TLS_CLIENT_CA_FILE, and the registered
//                    subject DN or SAN value is the certificate's
//   self-signed-tls  RFC 8705 §2.2: the certificate's x5t#S256 is a registered one (its dates checked)
//   spiffe           an X.509-SVID (SPIFFE X509-SVID spec §4, §5; draft-ietf-oauth-spiffe-client-auth):
//                    one URI SAN, a SPIFFE ID the client's pattern matches, a leaf that cannot sign
//                    certificates, chaining to its trust domain's X.509 authorities
// Chains are checked here, against the anchors given, never against the system store.
import type { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { certificatesFromFile } from '../verifier/certificate.js';
import { parseSpiffeId, parseSpiffePattern, spiffeIdMatches } from './spiffe-id.js';
import type { CertificateAuthenticator, PresentedCertificate, WorkloadBinding, WorkloadTrust, WorkloadVerdict } from './types.js';
import { certificateFacts, chainProblem, sameDn, sameDnsName, sameEmail, sameIp, validityProblem, type CertificateFacts } from './x509.js';

export interface CertificateAuthDeps {
  /** the CA certificates of TLS_CLIENT_CA_FILE: the only anchors of tls_client_auth (none: no such client authenticates) */
  clientCas: readonly X509Certificate[];
  /** the trust domains' X.509-SVID authorities */
  trust: Pick<WorkloadTrust, 'x509Authorities'>;
  now?: () => Date;
}

type Outcome = WorkloadVerdict | { problem: string };

/** Why a certificate that must be an end-entity certificate is not one, or undefined. */
function leafProblem(facts: CertificateFacts): string | undefined {
  if (facts.ca) return 'the client certificate is a CA certificate (basicConstraints cA is true)';
  return undefined;
}

/** The one registered value of a tls binding matched against the certificate: the identity proven, or undefined. */
function tlsMatch(binding: Extract<WorkloadBinding, { kind: 'tls' }>, facts: CertificateFacts): string | undefined {
  const { subjectDn, sanDns, sanUri, sanIp, sanEmail } = binding;
  if (subjectDn !== undefined) return sameDn(subjectDn, facts.subjectDn) ? facts.subjectDn : undefined;
  if (sanDns !== undefined) return facts.san.dns.find((v) => sameDnsName(v, sanDns)) && `dns:${sanDns}`;
  // URIs exactly (RFC 8705 §2.1.2 names no normalisation; a SPIFFE-like URI is case-sensitive in its path)
  if (sanUri !== undefined) return facts.san.uri.includes(sanUri) ? `uri:${sanUri}` : undefined;
  if (sanIp !== undefined) return facts.san.ip.find((v) => sameIp(v, sanIp)) && `ip:${sanIp}`;
  if (sanEmail !== undefined) return facts.san.email.find((v) => sameEmail(v, sanEmail)) && `email:${sanEmail}`;
  return undefined;
}

/** What the tls binding expects, for the refusal */
function tlsExpectation(b: Extract<WorkloadBinding, { kind: 'tls' }>): string {
  if (b.subjectDn !== undefined) return 'the registered subject DN';
  if (b.sanDns !== undefined) return 'the registered DNS SAN';
  if (b.sanUri !== undefined) return 'the registered URI SAN';
  if (b.sanIp !== undefined) return 'the registered IP address SAN';
  return 'the registered email SAN';
}

export function certificateAuthenticator(deps: CertificateAuthDeps): CertificateAuthenticator {
  const now = deps.now ?? (() => new Date());

  async function authenticate(client: { clientId: string; workload?: WorkloadBinding }, presented: PresentedCertificate): Promise<Outcome> {
    const binding = client.workload;
    const { certificate } = presented;
    const verdict = (method: WorkloadVerdict['method'], identity: string): WorkloadVerdict => ({ clientId: client.clientId, method, identity, certificate: presented });

    if (binding?.kind === 'self-signed-tls') {
      // RFC 8705 §2.2: the registered certificate itself is the credential; its dates still bound it
      if (!binding.thumbprints.includes(presented.thumbprint)) return { problem: 'the client certificate is not one registered for this client' };
      const dates = validityProblem(certificate, now());
      return dates ? { problem: dates } : verdict('self_signed_tls_client_auth', `x5t#S256:${presented.thumbprint}`);
    }
    if (binding?.kind !== 'tls' && binding?.kind !== 'spiffe') return { problem: 'this client does not authenticate with a client certificate' };

    const parsed = certificateFacts(certificate);
    if (!parsed.ok) return { problem: parsed.problem };
    const facts = parsed.value;

    if (binding.kind === 'tls') {
      if (deps.clientCas.length === 0) return { problem: 'tls_client_auth is not available: no client CA is configured (TLS_CLIENT_CA_FILE)' };
      const notLeaf = leafProblem(facts);
      if (notLeaf) return { problem: notLeaf };
      const chain = chainProblem(certificate, presented.chain, deps.clientCas, now());
      if (chain) return { problem: chain };
      const identity = tlsMatch(binding, facts);
      if (identity === undefined) return { problem: `the client certificate does not carry ${tlsExpectation(binding)}` };
      return verdict('tls_client_auth', identity);
    }

    // X.509-SVID (SPIFFE X509-SVID spec §4.1, §4.3, §5.2)
    if (facts.san.uri.length !== 1) return { problem: `an X.509-SVID has exactly one URI SAN, this certificate has ${facts.san.uri.length}` };
    const id = parseSpiffeId(facts.san.uri[0]);
    if (!id.ok) return { problem: `the certificate's URI SAN is not a SPIFFE ID: ${id.problem}` };
    const pattern = parseSpiffePattern(binding.spiffeId);
    if (!pattern.ok) return { problem: 'this client\'s SPIFFE ID pattern is invalid' };
    if (!spiffeIdMatches(pattern.value, id.value)) return { problem: `the SPIFFE ID ${id.value.id} is not the one this client is bound to` };
    if (facts.ca) return { problem: 'an X.509-SVID used as a client certificate must be a leaf (basicConstraints cA is true)' };
    if (!facts.keyUsage) return { problem: 'an X.509-SVID must have the keyUsage extension' };
    if (!facts.keyUsage.digitalSignature) return { problem: 'an X.509-SVID must have keyUsage digitalSignature' };
    if (facts.keyUsage.keyCertSign || facts.keyUsage.cRLSign) return { problem: 'an X.509-SVID leaf must not have keyUsage keyCertSign or cRLSign' };
    const authorities = await deps.trust.x509Authorities(id.value.trustDomain);
    if (!authorities.ok) return { problem: authorities.problem };
    const chain = chainProblem(certificate, presented.chain, authorities.value, now());
    if (chain) return { problem: chain === 'the client certificate does not chain to a trusted CA' ? `the X.509-SVID does not chain to the X.509 authorities of trust domain ${id.value.trustDomain}` : chain };
    return verdict('spiffe_x509', id.value.id);
  }

  return {
    async authenticate(client, presented) {
      try {
        return await authenticate(client, presented);
      } catch (err) {
        // a certificate node:crypto cannot work with (e.g. an unsupported key for verify) is a refusal, not a 500
        if (err instanceof Error && /ERR_|unsupported|invalid/i.test(`${(err as { code?: string }).code ?? ''} ${err.message}`)) {
          return { problem: 'the client certificate cannot be verified' };
        }
        throw err;
      }
    },
  };
}

/**
 * The CA certificates of TLS_CLIENT_CA_FILE (PEM, one or more), read at startup: the anchors of
 * tls_client_auth. Every one must be a CA certificate; an unreadable file stops the start.
 */
export async function loadClientCas(file: string | undefined): Promise<X509Certificate[]> {
  if (file === undefined) return [];
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new Error(`TLS_CLIENT_CA_FILE ${file} cannot be read (${err.code ?? err.message})`);
  });
  let certificates: X509Certificate[];
  try {
    certificates = certificatesFromFile(text);
  } catch (err) {
    throw new Error(`TLS_CLIENT_CA_FILE ${file} is not a PEM file of certificates (${(err as Error).message})`);
  }
  const notCa = certificates.find((c) => !c.ca);
  if (notCa) throw new Error(`TLS_CLIENT_CA_FILE ${file} holds a certificate that is not a CA certificate (${notCa.subject.replace(/\n/g, ', ')})`);
  return certificates;
}
