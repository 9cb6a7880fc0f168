// Client certificates as an API or a gateway receives them, for certificate-bound access tokens
// (RFC 8705 §3): an X509Certificate, DER bytes, PEM, or a header value as TLS-terminating proxies
// send it (nginx's $ssl_client_escaped_cert: URL-encoded PEM; others: base64 DER). node:crypto only,
// so sigil/verifier stays free of the server's dependencies; Sigil's own proxy header reading
// (src/workload/client-certificate.ts) uses the same parser.
import { createHash, X509Certificate } from 'node:crypto';

/** A client certificate: node:crypto's, DER bytes, or text (PEM, URL-encoded PEM, base64 DER). */
export type CertificateInput = X509Certificate | Uint8Array | string;

/** the most certificates read from one header value */
export const MAX_HEADER_CERTIFICATES = 8;
/** a CA bundle file may hold more */
const MAX_FILE_CERTIFICATES = 1000;

export class MalformedCertificate extends Error {}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*)-----END CERTIFICATE-----/g;

/** The certificates in a header value (leaf first): URL-encoded PEM, plain PEM, or base64 DER; MalformedCertificate otherwise. */
export function certificatesFromText(value: string, max = MAX_HEADER_CERTIFICATES): X509Certificate[] {
  let text = value.trim();
  // URL-encoded PEM: -----BEGIN%20CERTIFICATE-----%0A... (nginx escapes what is not URL-safe)
  if (/^(-|%2D)/i.test(text) && text.includes('%')) {
    try {
      text = decodeURIComponent(text);
    } catch {
      throw new MalformedCertificate('is not URL-encoded correctly');
    }
  }
  const ders: Buffer[] = [];
  if (text.startsWith('-----BEGIN')) {
    // a proxy may have turned the PEM's line breaks into spaces or tabs
    const blocks = [...text.matchAll(PEM_BLOCK)];
    if (blocks.length === 0 || text.replace(PEM_BLOCK, '').trim() !== '') throw new MalformedCertificate('is not a PEM certificate');
    for (const b of blocks) ders.push(Buffer.from(b[1]!.replace(/\s+/g, ''), 'base64'));
  } else {
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) throw new MalformedCertificate('is neither PEM nor base64 DER');
    ders.push(Buffer.from(text, 'base64'));
  }
  if (ders.length > max) throw new MalformedCertificate(`holds more than ${max} certificates`);
  return ders.map((der) => {
    try {
      return new X509Certificate(der);
    } catch {
      throw new MalformedCertificate('is not a valid X.509 certificate');
    }
  });
}

/**
 * A PEM file of (CA) certificates, e.g. TLS_CLIENT_CA_FILE: its CERTIFICATE blocks, text between
 * them ignored (as OpenSSL does: bundles carry comments and `openssl x509 -text` output).
 */
export function certificatesFromFile(text: string): X509Certificate[] {
  const blocks = text.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) throw new MalformedCertificate('holds no PEM certificate');
  return certificatesFromText(blocks.join('\n'), MAX_FILE_CERTIFICATES);
}

/** The leaf of any accepted input; MalformedCertificate when it is not a certificate. */
export function toCertificate(input: CertificateInput): X509Certificate {
  if (input instanceof X509Certificate) return input;
  if (typeof input === 'string') return certificatesFromText(input)[0]!;
  try {
    return new X509Certificate(Buffer.from(input.buffer, input.byteOffset, input.byteLength));
  } catch {
    throw new MalformedCertificate('is not a valid X.509 certificate');
  }
}

/** base64url SHA-256 of the DER: a token's cnf.x5t#S256 (RFC 8705 §3.1). */
export function certificateThumbprint(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('base64url');
}
