// Certificates for the mTLS tests, minted with the openssl CLI (never by the code under test): a CA,
// intermediates, leaves with chosen SANs, keyUsage, basicConstraints and validity, self-signed ones.
// Each call works in its own temporary directory; the PEMs are returned (and written, for servers
// that take file names).
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface Minted {
  /** the certificate, PEM */
  cert: string;
  /** its private key, PEM (PKCS#8) */
  key: string;
  certFile: string;
  keyFile: string;
  x509: X509Certificate;
  /** base64url SHA-256 of the DER: its x5t#S256 */
  thumbprint: string;
}

export interface CertOptions {
  /** "/CN=leaf/O=Example" (openssl -subj syntax) */
  subject?: string;
  /** SAN entries as openssl writes them: "URI:spiffe://td/x", "DNS:a.example", "IP:10.0.0.1", "email:a@b" */
  san?: string[];
  /** keyUsage, e.g. "critical,digitalSignature"; null leaves the extension out */
  keyUsage?: string | null;
  /** basicConstraints, e.g. "critical,CA:FALSE"; null leaves it out */
  basicConstraints?: string | null;
  /** validity window, relative to now, in days (negative: the past) */
  notBeforeDays?: number;
  notAfterDays?: number;
  /** the issuing CA; undefined: self-signed */
  issuer?: Minted;
  /** the key of this certificate instead of a new one (a renewed CA certificate) */
  keyOf?: Minted;
}

let dir: string | undefined;
let serial = 0;
const workDir = () => (dir ??= mkdtempSync(path.join(tmpdir(), 'sigil-x509-')));

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });

/** openssl's -not_before/-not_after form (YYYYMMDDHHMMSSZ) for now + days */
function when(days: number): string {
  return new Date(Date.now() + days * 86_400_000).toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, '').slice(0, 14) + 'Z';
}

export function thumbprintOf(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('base64url');
}

/** A certificate (CA or leaf) per `opts`, signed by opts.issuer or by itself. */
export function mint(opts: CertOptions = {}): Minted {
  const d = workDir();
  const n = `c${++serial}`;
  const keyFile = path.join(d, `${n}.key`);
  const csrFile = path.join(d, `${n}.csr`);
  const certFile = path.join(d, `${n}.pem`);
  const extFile = path.join(d, `${n}.ext`);
  if (opts.keyOf) writeFileSync(keyFile, opts.keyOf.key);
  else openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile]);
  openssl(['req', '-new', '-key', keyFile, '-subj', opts.subject ?? `/CN=${n}`, '-out', csrFile]);
  const ext = ['subjectKeyIdentifier=hash'];
  if (opts.issuer) ext.push('authorityKeyIdentifier=keyid');
  if (opts.basicConstraints !== null) ext.push(`basicConstraints=${opts.basicConstraints ?? 'critical,CA:FALSE'}`);
  if (opts.keyUsage !== null) ext.push(`keyUsage=${opts.keyUsage ?? 'critical,digitalSignature'}`);
  if (opts.san?.length) ext.push(`subjectAltName=${opts.san.join(',')}`);
  writeFileSync(extFile, ext.join('\n') + '\n');
  // `openssl ca` (not x509 -req): OpenSSL 3.0 sets arbitrary validity dates, the past included, only there
  const confFile = path.join(d, `${n}.cnf`);
  const db = path.join(d, `${n}.index`);
  writeFileSync(db, '');
  writeFileSync(`${db}.serial`, '01\n');
  writeFileSync(confFile, [
    '[ca]', 'default_ca = ca', '[ca]', `database = ${db}`, `serial = ${db}.serial`, `new_certs_dir = ${d}`, 'default_md = sha256',
    'policy = anything', 'unique_subject = no', 'copy_extensions = none', '[anything]', 'commonName = optional',
  ].join('\n') + '\n');
  const signer = opts.issuer ? ['-cert', opts.issuer.certFile, '-keyfile', opts.issuer.keyFile] : ['-selfsign', '-keyfile', keyFile];
  openssl([
    'ca', '-batch', '-notext', '-preserveDN', '-config', confFile, '-in', csrFile, ...signer, '-extfile', extFile, '-out', certFile,
    '-rand_serial', '-startdate', when(opts.notBeforeDays ?? -1), '-enddate', when(opts.notAfterDays ?? 30),
  ]);
  const cert = readFileSync(certFile, 'utf8');
  const x509 = new X509Certificate(cert);
  return { cert, key: readFileSync(keyFile, 'utf8'), certFile, keyFile, x509, thumbprint: thumbprintOf(x509) };
}

/** A root CA. */
export function mintCa(subject = '/CN=Test Root CA', opts: Omit<CertOptions, 'subject' | 'issuer'> = {}): Minted {
  return mint({ basicConstraints: 'critical,CA:TRUE', keyUsage: 'critical,keyCertSign,cRLSign', ...opts, subject });
}

/** An intermediate CA under `issuer`. */
export function mintIntermediate(issuer: Minted, subject = '/CN=Test Intermediate CA'): Minted {
  return mint({ basicConstraints: 'critical,CA:TRUE', keyUsage: 'critical,keyCertSign,cRLSign', subject, issuer });
}

/** A client (leaf) certificate under `issuer` (undefined: self-signed). */
export function mintLeaf(issuer: Minted | undefined, opts: Omit<CertOptions, 'issuer'> = {}): Minted {
  return mint({ ...opts, issuer });
}

/** Several PEMs in one file (a CA bundle). */
export function bundleFile(...certs: Minted[]): string {
  const file = path.join(workDir(), `bundle${++serial}.pem`);
  writeFileSync(file, certs.map((c) => c.cert).join(''));
  return file;
}
