// The readable (non --json) forms. JSON output is the server's objects untouched; these are for people.
// Every value is escaped (terminal-text.ts): a stored name or kid must not be able to drive the terminal.
import type { JWK } from 'jose';
import type { clientView } from '../clients/admin-clients.js';
import { escapeValue } from './terminal-text.js';

/** The client object as the admin API sends it (and `--json` prints it). */
export type ClientObject = ReturnType<typeof clientView>;

function list(values: readonly string[]): string {
  return values.length ? values.join(', ') : '-';
}

/** Name the registered keys without dumping them: kid and algorithm are what a person compares. */
function keysSummary(c: ClientObject): string {
  if ('jwks_uri' in c && c.jwks_uri) return `jwks_uri ${c.jwks_uri}`;
  if (c.token_endpoint_auth_method !== 'private_key_jwt') return '- (a workload identity, no registered keys)';
  const keys: JWK[] = ('jwks' in c && c.jwks?.keys) || [];
  const named = keys.map((k) => `${k.kid ?? '(no kid)'} ${k.alg ?? k.kty ?? ''}`.trim());
  return `${keys.length} key${keys.length === 1 ? '' : 's'}${named.length ? `: ${named.join(', ')}` : ''}`;
}

/** The workload identity a client is bound to, one row per member the admin API shows. */
function workloadRows(c: ClientObject): Array<[string, string]> {
  const rows: Array<[string, string]> = [];
  if (c.spiffe_id) rows.push(['spiffe_id', c.spiffe_id]);
  if (c.federated_subject) {
    rows.push(['federated_issuer', c.federated_subject.issuer], ['federated_subject', c.federated_subject.subject]);
    const claims = Object.entries(c.required_claims ?? {});
    rows.push(['required_claims', claims.length ? claims.map(([k, v]) => `${k}=${v}`).join(', ') : '-']);
  }
  for (const name of ['tls_client_auth_subject_dn', 'tls_client_auth_san_dns', 'tls_client_auth_san_uri', 'tls_client_auth_san_ip', 'tls_client_auth_san_email'] as const) {
    const value = c[name];
    if (value) rows.push([name, value]);
  }
  if (c.self_signed_certificate_thumbprints) rows.push(['certificates (x5t#S256)', c.self_signed_certificate_thumbprints.join(', ')]);
  return rows;
}

/** How a client authenticates, in one cell: the method and, for a workload, the identity it is bound to. */
function authSummary(c: ClientObject): string {
  const identity = c.spiffe_id ?? (c.federated_subject ? `${c.federated_subject.issuer} ${c.federated_subject.subject}` : undefined)
    ?? c.tls_client_auth_subject_dn ?? c.tls_client_auth_san_dns ?? c.tls_client_auth_san_uri ?? c.tls_client_auth_san_ip ?? c.tls_client_auth_san_email;
  return identity ? `${c.token_endpoint_auth_method} ${identity}` : c.token_endpoint_auth_method;
}

/** Aligned `label  value` lines. */
export function fields(rows: Array<[string, string]>): string {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${escapeValue(value)}`).join('\n');
}

export function formatClient(c: ClientObject): string {
  const rows: Array<[string, string]> = [
    ['client_id', c.client_id],
    ['name', c.name],
    ['status', c.status],
    ['scope', c.scope || '-'],
    ['audiences', list(c.audiences)],
    ['serves', list(c.serves)],
    ['grant_types', list(c.grant_types)],
    ['dpop', c.dpop],
    ['can_introspect', String(c.can_introspect)],
    ['auth_method', c.token_endpoint_auth_method],
    ['keys', keysSummary(c)],
    ...workloadRows(c),
    ['token_binding', c.token_binding === 'mtls' ? 'mtls (cnf.x5t#S256: the client certificate)' : 'dpop'],
    ['created_at', c.created_at],
    ['updated_at', c.updated_at],
  ];
  if (c.revoked_at) rows.push(['revoked_at', c.revoked_at], ['revoked_by', c.revoked_by ?? '-'], ['revoked_reason', c.revoked_reason ?? '-']);
  return fields(rows);
}

/** Columns padded to their widest cell; the last column is left ragged. */
export function table(header: string[], rawRows: string[][]): string {
  const rows = rawRows.map((r) => r.map(escapeValue));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatClientList(clients: ClientObject[]): string {
  if (!clients.length) return 'no clients';
  return table(['CLIENT_ID', 'STATUS', 'NAME', 'SCOPE', 'AUTH'], clients.map((c) => [c.client_id, c.status, c.name, c.scope || '-', authSummary(c)]));
}

/** What `POST /admin/tokens/revoke` answers (and `sigil tokens revoke --json` prints). */
export type TokenRevocationObject = import('../revocation/revocations.js').TokenRevocationRecord;

export function formatTokenRevocation(r: TokenRevocationObject): string {
  return fields([
    ['jti', r.jti],
    ['client_id', r.client_id ?? '- (unknown)'],
    ['status', r.status],
    ['known', r.known ? 'yes (issued by this server)' : 'no (no record of issuing it)'],
    ['revoked_at', r.revoked_at],
    ['revoked_by', r.revoked_by],
    ['reason', r.reason ?? '-'],
    ['expires_at', r.expires_at],
  ]);
}
