// What the client-certificate checks read from a certificate beyond node:crypto's X509Certificate:
// keyUsage, basicConstraints, the SANs by type, the subject as an RFC 4514 string, and chain building
// to a given set of anchors (never the system store). Extensions are parsed with @peculiar/asn1-x509
// (Node's X509Certificate has no keyUsage and flattens the SANs into one string).
import type { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  BasicConstraints, Certificate, id_ce_basicConstraints, id_ce_keyUsage, id_ce_subjectAltName, KeyUsage, KeyUsageFlags, Name,
  SubjectAlternativeName,
} from '@peculiar/asn1-x509';
import ipaddr from 'ipaddr.js';

/** the longest chain followed from a leaf to an anchor (leaf, intermediates, anchor) */
export const MAX_CHAIN_LENGTH = 8;

export interface CertificateFacts {
  /** undefined: no keyUsage extension */
  keyUsage: { digitalSignature: boolean; keyCertSign: boolean; cRLSign: boolean } | undefined;
  /** basicConstraints cA (false when the extension is absent) */
  ca: boolean;
  san: { dns: string[]; uri: string[]; ip: string[]; email: string[] };
  /** the subject as an RFC 4514 string (last RDN first) */
  subjectDn: string;
}

/** base64url SHA-256 of the DER: the x5t#S256 of RFC 8705 §3.1 */
export { certificateThumbprint as x5tS256 } from '../verifier/certificate.js';

/** The facts, or a sentence when the certificate's extensions cannot be read. */
export function certificateFacts(cert: X509Certificate): { ok: true; value: CertificateFacts } | { ok: false; problem: string } {
  try {
    const parsed = AsnConvert.parse(cert.raw, Certificate);
    const extensions = parsed.tbsCertificate.extensions ?? [];
    const ext = (oid: string) => {
      const found = extensions.filter((e) => e.extnID === oid);
      if (found.length > 1) throw new Error(`the certificate has extension ${oid} more than once`);
      return found[0]?.extnValue.buffer;
    };
    const ku = ext(id_ce_keyUsage);
    const flags = ku === undefined ? undefined : AsnConvert.parse(ku, KeyUsage).toNumber();
    const bc = ext(id_ce_basicConstraints);
    const sanRaw = ext(id_ce_subjectAltName);
    const san = { dns: [] as string[], uri: [] as string[], ip: [] as string[], email: [] as string[] };
    for (const name of sanRaw === undefined ? [] : AsnConvert.parse(sanRaw, SubjectAlternativeName)) {
      if (name.dNSName !== undefined) san.dns.push(name.dNSName);
      if (name.uniformResourceIdentifier !== undefined) san.uri.push(name.uniformResourceIdentifier);
      if (name.iPAddress !== undefined) san.ip.push(name.iPAddress);
      if (name.rfc822Name !== undefined) san.email.push(name.rfc822Name);
    }
    return {
      ok: true,
      value: {
        keyUsage: flags === undefined ? undefined : {
          digitalSignature: (flags & KeyUsageFlags.digitalSignature) !== 0,
          keyCertSign: (flags & KeyUsageFlags.keyCertSign) !== 0,
          cRLSign: (flags & KeyUsageFlags.cRLSign) !== 0,
        },
        ca: bc === undefined ? false : AsnConvert.parse(bc, BasicConstraints).cA === true,
        san,
        subjectDn: rfc4514(parsed.tbsCertificate.subject),
      },
    };
  } catch (err) {
    return { ok: false, problem: `the client certificate's extensions cannot be read (${(err as Error).message.slice(0, 120)})` };
  }
}

// --- distinguished names ------------------------------------------------------------------------

/** RFC 4514 §3 short names, and a few more in common use (RFC 4519, PKCS #9) */
const SHORT_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN', '2.5.4.7': 'L', '2.5.4.8': 'ST', '2.5.4.10': 'O', '2.5.4.11': 'OU', '2.5.4.6': 'C', '2.5.4.9': 'STREET',
  '0.9.2342.19200300.100.1.25': 'DC', '0.9.2342.19200300.100.1.1': 'UID', '2.5.4.5': 'SERIALNUMBER', '1.2.840.113549.1.9.1': 'EMAILADDRESS',
  '2.5.4.4': 'SN', '2.5.4.42': 'GIVENNAME', '2.5.4.12': 'TITLE', '2.5.4.17': 'POSTALCODE', '2.5.4.97': 'ORGANIZATIONIDENTIFIER',
};
const OID_OF: Record<string, string> = Object.fromEntries([
  ...Object.entries(SHORT_NAMES).map(([oid, name]) => [name, oid]),
  ['SERIALNUMBER', '2.5.4.5'], ['E', '1.2.840.113549.1.9.1'], ['EMAIL', '1.2.840.113549.1.9.1'], ['USERID', '0.9.2342.19200300.100.1.1'],
]);

const escape4514 = (v: string) => v
  .replace(/[\\",+;<>=]/g, (c) => `\\${c}`)
  .replace(/^([ #])/, '\\$1')
  .replace(/ $/, '\\ ')
  .replace(/\0/g, '\\00');

function rfc4514(name: Name): string {
  return [...name].reverse().map((rdn) => [...rdn].map((atv) => {
    const type = SHORT_NAMES[atv.type] ?? atv.type;
    const text = atv.value.anyValue ? `#${Buffer.from(atv.value.anyValue).toString('hex')}` : escape4514(atv.value.toString());
    return `${type}=${text}`;
  }).join('+')).join(',');
}

type Rdn = Array<{ oid: string; value: string }>;

/** Splits on `sep` where it is not escaped by a backslash. */
function splitUnescaped(text: string, sep: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && i + 1 < text.length) {
      current += c + text[i + 1];
      i++;
    } else if (c === sep) {
      parts.push(current);
      current = '';
    } else current += c;
  }
  parts.push(current);
  return parts;
}

/** RFC 4514 §3 string value → its characters (\X and \HH escapes undone); throws when malformed. */
function unescapeValue(raw: string): string {
  // leading and trailing unescaped spaces are not part of the value
  const trimmed = raw.replace(/^ +/, '').replace(/(?<!\\) +$/, '');
  if (trimmed.startsWith('#')) return trimmed.toLowerCase();
  const bytes: number[] = [];
  for (let i = 0; i < trimmed.length; i++) {
    const c = trimmed[i]!;
    if (c !== '\\') {
      bytes.push(...Buffer.from(c, 'utf8'));
      continue;
    }
    const pair = trimmed.slice(i + 1, i + 3);
    if (/^[0-9a-fA-F]{2}$/.test(pair)) {
      bytes.push(parseInt(pair, 16));
      i += 2;
    } else if (i + 1 < trimmed.length && /[\\ "#+,;<=>]/.test(trimmed[i + 1]!)) {
      bytes.push(trimmed.charCodeAt(i + 1));
      i += 1;
    } else throw new Error('a backslash must escape a special character or two hex digits');
  }
  return Buffer.from(bytes).toString('utf8');
}

function parseDn(text: string): Rdn[] {
  if (text.trim() === '') throw new Error('the subject DN is empty');
  return splitUnescaped(text, ',').map((rdn) => splitUnescaped(rdn, '+').map((atv) => {
    const eq = atv.indexOf('=');
    if (eq <= 0) throw new Error(`"${atv.trim().slice(0, 40)}" is not TYPE=value`);
    const type = atv.slice(0, eq).trim().toUpperCase().replace(/^OID\./, '');
    const oid = /^\d+(\.\d+)+$/.test(type) ? type : OID_OF[type];
    if (!oid) throw new Error(`unknown attribute type "${atv.slice(0, eq).trim().slice(0, 40)}" (use CN, O, OU, C, L, ST, DC, UID, ... or a dotted OID)`);
    return { oid, value: unescapeValue(atv.slice(eq + 1)) };
  }));
}

/**
 * The form two DNs are compared in: attribute types as OIDs, each RDN's attributes in a fixed order,
 * values compared as LDAP's caseIgnoreMatch roughly does (RFC 4518: NFKC, case folded, inner runs of
 * spaces as one, leading and trailing spaces ignored).
 */
function canonical(rdns: Rdn[]): string {
  const value = (v: string) => v.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim();
  return JSON.stringify(rdns.map((rdn) => rdn.map((a) => `${a.oid}=${value(a.value)}`).sort()));
}

/** Why `dn` is not an RFC 4514 distinguished name Sigil can match, or undefined when it is. */
export function subjectDnProblem(dn: unknown): string | undefined {
  if (typeof dn !== 'string') return 'a subject DN is a string, e.g. CN=client.example,O=Example';
  if (dn.length > 1024) return 'a subject DN is at most 1024 characters';
  try {
    parseDn(dn);
    return undefined;
  } catch (err) {
    return `not an RFC 4514 distinguished name: ${(err as Error).message}`;
  }
}

/** Whether two RFC 4514 DNs name the same subject (false when either cannot be parsed). */
export function sameDn(a: string, b: string): boolean {
  try {
    return canonical(parseDn(a)) === canonical(parseDn(b));
  } catch {
    return false;
  }
}

// --- SAN values ---------------------------------------------------------------------------------

/** DNS names compare case-insensitively, without a trailing dot; no wildcards (a client is one name). */
export const sameDnsName = (a: string, b: string) => a.toLowerCase().replace(/\.$/, '') === b.toLowerCase().replace(/\.$/, '');

/** Addresses compare as addresses: "::1" is "0:0:0:0:0:0:0:1". */
export function sameIp(a: string, b: string): boolean {
  if (!isIP(a) || !isIP(b)) return false;
  return ipaddr.parse(a).toNormalizedString() === ipaddr.parse(b).toNormalizedString() && ipaddr.parse(a).kind() === ipaddr.parse(b).kind();
}

/** The local part exactly, the domain case-insensitively (RFC 5321 §2.4). */
export function sameEmail(a: string, b: string): boolean {
  const [la, da] = [a.slice(0, a.lastIndexOf('@')), a.slice(a.lastIndexOf('@') + 1)];
  const [lb, db] = [b.slice(0, b.lastIndexOf('@')), b.slice(b.lastIndexOf('@') + 1)];
  return a.includes('@') && b.includes('@') && la === lb && da.toLowerCase() === db.toLowerCase();
}

// --- validity and chains ------------------------------------------------------------------------

/** Why `cert` is not valid at `now`, or undefined. */
export function validityProblem(cert: X509Certificate, now: Date, what = 'the client certificate'): string | undefined {
  if (now < new Date(cert.validFrom)) return `${what} is not valid yet`;
  if (now > new Date(cert.validTo)) return `${what} has expired`;
  return undefined;
}

const issuedBy = (child: X509Certificate, parent: X509Certificate) => child.checkIssued(parent) && child.verify(parent.publicKey);

/**
 * Why `leaf` does not chain to one of `anchors` through (some of) `intermediates`, or undefined when
 * it does: each link's issuer name and signature, every certificate on the path valid at `now`, every
 * intermediate a CA. The anchors are the only trust: never the system store.
 */
export function chainProblem(leaf: X509Certificate, intermediates: readonly X509Certificate[], anchors: readonly X509Certificate[], now: Date): string | undefined {
  const leafProblem = validityProblem(leaf, now);
  if (leafProblem) return leafProblem;
  let current = leaf;
  const unused = [...intermediates];
  for (let depth = 1; depth < MAX_CHAIN_LENGTH; depth++) {
    const issuers = anchors.filter((a) => issuedBy(current, a));
    if (issuers.length) {
      // an anchor past its dates no longer vouches for anything; a renewed one (same key) still does
      const problems = issuers.map((a) => validityProblem(a, now, 'the CA certificate the client certificate chains to'));
      return problems.includes(undefined) ? undefined : problems[0];
    }
    const i = unused.findIndex((c) => c.ca && issuedBy(current, c));
    if (i === -1) break;
    const next = unused.splice(i, 1)[0]!;
    const problem = validityProblem(next, now, 'an intermediate CA certificate of the client certificate');
    if (problem) return problem;
    current = next;
  }
  return 'the client certificate does not chain to a trusted CA';
}
