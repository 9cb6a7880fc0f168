// `sigil clients create|list|show|revoke` and `sigil clients keys set`: register, inspect, revoke and re-key
// the clients of the server through the admin API.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { GRANT_TYPES } from '../clients/client-store.js';
import { parseSpiffePattern } from '../workload/spiffe-id.js';
import { AdminSession } from './admin-session.js';
import {
  flag, listOption, MAX_REASON, reasonOption, requiredString, stringOption, type Command, type CommandInput, type CommandResult, type OptionValues,
} from './command.js';
import { CliError, ServerError, UsageError } from './errors.js';
import { readJwksFile } from './jwks-file.js';
import { formatClient, formatClientList, type ClientObject } from './output.js';

/** --grant-types "a,b": known grant types only, so a typo is a usage error rather than a server round trip. */
function grantTypes(values: OptionValues): string[] {
  const raw = stringOption(values, 'grant-types');
  if (raw === undefined) return ['client_credentials'];
  const grants = [...new Set(raw.split(',').map((g) => g.trim()).filter(Boolean))];
  if (!grants.length) throw new UsageError('--grant-types needs at least one grant type');
  const unknown = grants.filter((g) => !(GRANT_TYPES as readonly string[]).includes(g));
  if (unknown.length) throw new UsageError(`--grant-types: unknown ${unknown.map((g) => JSON.stringify(g)).join(', ')}; allowed: ${GRANT_TYPES.join(', ')}`);
  return grants;
}

function dpopMode(values: OptionValues): 'required' | 'optional' {
  const raw = stringOption(values, 'dpop') ?? 'required';
  if (raw !== 'required' && raw !== 'optional') throw new UsageError(`--dpop must be "required" or "optional", got ${JSON.stringify(raw)}`);
  return raw;
}

/** The options that each give a client its one credential. */
const CREDENTIAL_OPTIONS = [
  'jwks-file', 'jwks-uri', 'spiffe-id', 'federated-subject', 'tls-subject-dn', 'tls-san-dns', 'tls-san-uri', 'tls-san-ip', 'tls-san-email', 'self-signed-cert-file',
] as const;
const TLS_MEMBER: Record<string, string> = {
  'tls-subject-dn': 'tls_client_auth_subject_dn',
  'tls-san-dns': 'tls_client_auth_san_dns',
  'tls-san-uri': 'tls_client_auth_san_uri',
  'tls-san-ip': 'tls_client_auth_san_ip',
  'tls-san-email': 'tls_client_auth_san_email',
};
/** larger than any certificate chain a client would register */
const MAX_PEM_FILE = 64 * 1024;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The PEM certificates of a file; refused locally when it holds a private key (which must never leave this machine). */
async function readCertificateFile(file: string, cwd: string): Promise<string[]> {
  let text: string;
  try {
    const full = path.resolve(cwd, file);
    if ((await stat(full)).size > MAX_PEM_FILE) throw new UsageError(`--self-signed-cert-file ${file}: too large to be a certificate file`);
    text = await readFile(full, 'utf8');
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`--self-signed-cert-file ${file}: cannot read it (${code === 'ENOENT' ? 'no such file' : code ?? (err as Error).message})`);
  }
  if (/PRIVATE KEY/.test(text)) throw new UsageError(`--self-signed-cert-file ${file} holds a private key: give a file with only the certificate (nothing was sent)`);
  const certificates = text.match(PEM_CERTIFICATE) ?? [];
  if (!certificates.length) throw new UsageError(`--self-signed-cert-file ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return certificates;
}

/** --require-claim NAME=VALUE, repeatable: the claims a federated JWT must carry with exactly these values. */
function requiredClaims(values: OptionValues): Record<string, string> | undefined {
  const raw = listOption(values, 'require-claim');
  if (!raw.length) return undefined;
  const claims: Record<string, string> = {};
  for (const item of raw) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--require-claim must be NAME=VALUE, got ${JSON.stringify(item)}`);
    const name = item.slice(0, eq);
    if (Object.hasOwn(claims, name)) throw new UsageError(`--require-claim ${name} is given twice`);
    claims[name] = item.slice(eq + 1);
  }
  return claims;
}

/** The one credential of the new client, as the admin API's members. */
async function credential(values: OptionValues, positionals: string[], cwd: string): Promise<Record<string, unknown>> {
  const given = CREDENTIAL_OPTIONS.filter((o) => values[o] !== undefined);
  if (given.length !== 1) {
    throw new UsageError(`give exactly one credential: --jwks-file, --jwks-uri, --spiffe-id, --federated-subject, --tls-subject-dn, --tls-san-{dns,uri,ip,email} or --self-signed-cert-file${given.length ? ` (got ${given.map((o) => `--${o}`).join(' and ')})` : ''}`);
  }
  const option = given[0]!;
  if (option === 'federated-subject') {
    if (positionals.length !== 1) throw new UsageError('--federated-subject takes two values: ISSUER SUBJECT (e.g. --federated-subject https://kubernetes.default.svc system:serviceaccount:payments:api)');
  } else if (positionals.length) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  }
  if (values['require-claim'] !== undefined && option !== 'federated-subject') throw new UsageError('--require-claim goes with --federated-subject only');
  const value = stringOption(values, option);
  switch (option) {
    case 'jwks-file':
      return { jwks: await readJwksFile(value!, cwd) };
    case 'jwks-uri':
      if (!URL.canParse(value!)) throw new UsageError(`--jwks-uri must be an absolute URL, got ${JSON.stringify(value)}`);
      return { jwks_uri: value };
    case 'spiffe-id': {
      const parsed = parseSpiffePattern(value);
      if (!parsed.ok) throw new UsageError(`--spiffe-id: ${parsed.problem}`);
      return { spiffe_id: value };
    }
    case 'federated-subject': {
      if (!URL.canParse(value!)) throw new UsageError(`--federated-subject: ISSUER must be the URL of a configured federation, got ${JSON.stringify(value)}`);
      if (!positionals[0]!.trim()) throw new UsageError('--federated-subject: SUBJECT must not be blank');
      const claims = requiredClaims(values);
      return { federated_subject: { issuer: value, subject: positionals[0] }, ...(claims ? { required_claims: claims } : {}) };
    }
    case 'self-signed-cert-file':
      return { self_signed_certificates: (await Promise.all(listOption(values, option).map((f) => readCertificateFile(f, cwd)))).flat() };
    default:
      if (!value?.trim()) throw new UsageError(`--${option} needs a value`);
      return { [TLS_MEMBER[option]!]: value };
  }
}

/** Everything the create request will carry, checked locally first: nothing is sent when the input is wrong. */
async function newClientBody({ values, positionals, io }: CommandInput): Promise<Record<string, unknown>> {
  const name = requiredString(values, 'name');
  const tokenBinding = stringOption(values, 'token-binding');
  if (tokenBinding !== undefined && tokenBinding !== 'dpop' && tokenBinding !== 'mtls') throw new UsageError(`--token-binding must be "dpop" or "mtls", got ${JSON.stringify(tokenBinding)}`);
  const body: Record<string, unknown> = {
    name,
    ...(await credential(values, positionals, io.cwd)),
    // --scope may be given once as "a b" or repeated; the server wants one space-delimited string
    scope: listOption(values, 'scope').flatMap((s) => s.split(/\s+/)).filter(Boolean).join(' '),
    audiences: listOption(values, 'audience'),
    serves: listOption(values, 'serves'),
    grant_types: grantTypes(values),
    // a certificate-bound client's default is the server's (DPoP optional); anyone else's is required
    ...(tokenBinding === 'mtls' && values.dpop === undefined ? {} : { dpop: dpopMode(values) }),
    ...(tokenBinding === undefined ? {} : { token_binding: tokenBinding }),
    can_introspect: flag(values, 'can-introspect'),
  };
  return body;
}

async function create(input: CommandInput): Promise<CommandResult> {
  const body = await newClientBody(input);
  const session = await AdminSession.open(input.io);
  const client = await session.call<ClientObject>('POST', '/admin/clients', body);
  return { json: client, human: `Client created.\n\n${formatClient(client)}` };
}

async function list({ io }: CommandInput): Promise<CommandResult> {
  const session = await AdminSession.open(io);
  const clients = await session.call<ClientObject[]>('GET', '/admin/clients');
  return { json: clients, human: formatClientList(clients) };
}

/** The client_id positional, non-blank (parseArgs accepts `""`). */
function clientIdArg(id: string | undefined, what: string): string {
  if (!id?.trim()) throw new UsageError(`give the client_id to ${what}`);
  return id;
}

const clientPath = (id: string, action = '') => `/admin/clients/${encodeURIComponent(id)}${action}`;

/** A call about one client; the server's "no such client" becomes a plain sentence naming the id. */
async function aboutClient<T>(id: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    // 404 not_found is "no such client"; any other 404 (e.g. a server without this endpoint) keeps its own words
    if (err instanceof ServerError && err.status === 404 && err.error === 'not_found') throw new CliError(`no client with client_id ${JSON.stringify(id)}`);
    throw err;
  }
}

async function show({ positionals: [raw], io }: CommandInput): Promise<CommandResult> {
  const id = clientIdArg(raw, 'show');
  const session = await AdminSession.open(io);
  const client = await aboutClient(id, () => session.call<ClientObject>('GET', clientPath(id)));
  return { json: client, human: formatClient(client) };
}

async function revoke({ positionals: [raw], values, io }: CommandInput): Promise<CommandResult> {
  const id = clientIdArg(raw, 'revoke');
  const reason = reasonOption(values);
  const session = await AdminSession.open(io);
  const client = await aboutClient(id, () => session.call<ClientObject>('POST', clientPath(id, '/revoke'), reason === undefined ? {} : { reason }));
  if (client.status !== 'revoked') throw new CliError(`Sigil answered the revocation of ${id} with a client whose status is ${JSON.stringify(client.status)}, not "revoked"`);
  return { json: client, human: `Client revoked: it gets no new token, and every token it holds is refused.\n\n${formatClient(client)}` };
}

async function setKeys({ positionals: [raw], values, io }: CommandInput): Promise<CommandResult> {
  const id = clientIdArg(raw, 'set the keys of');
  // (a workload-bound client has no keys: the server refuses, saying so)
  // read and check the file first: a private key in it must never leave this machine
  const jwks = await readJwksFile(requiredString(values, 'jwks-file'), io.cwd);
  const session = await AdminSession.open(io);
  const client = await aboutClient(id, () => session.call<ClientObject>('PUT', clientPath(id, '/jwks'), { jwks }));
  return { json: client, human: `Keys replaced: the client's assertions must now be signed with one of these keys; the old ones are refused.\n\n${formatClient(client)}` };
}

export const clientCommands: Command[] = [
  {
    words: ['clients', 'create'],
    summary: 'register a client (private_key_jwt with your public keys, or a workload identity)',
    usage: 'clients create --name N (--jwks-file F | --jwks-uri U | --spiffe-id ID | --federated-subject ISSUER SUBJECT [--require-claim NAME=VALUE]... | --tls-subject-dn DN | --tls-san-dns|--tls-san-uri|--tls-san-ip|--tls-san-email V | --self-signed-cert-file PEM...) [--token-binding dpop|mtls] [--scope "a b"] [--audience URI]... [--serves URI]... [--grant-types g1,g2] [--dpop required|optional] [--can-introspect] [--json]',
    help: `  --name N             a name people recognise (required)

Exactly one credential:
  --jwks-file F        a file with the client's PUBLIC keys as a JWKS ({"keys": [...]});
                       refused before sending if it holds private members (d, p, q, ...)
                       (token_endpoint_auth_method private_key_jwt)
  --jwks-uri U         or: where the server fetches the client's JWKS (https) (private_key_jwt)
  --spiffe-id ID       a SPIFFE ID (spiffe://example.org/ns/payments/sa/api) or a path prefix ending
                       in /* (spiffe://example.org/ns/payments/*: /ns/payments/x, not /ns/payments);
                       its trust domain must be configured (sigil trust-domains add). The client
                       authenticates with a JWT-SVID (spiffe_jwt) or an X.509-SVID over mTLS.
                       Refused if it overlaps another active client's SPIFFE ID.
  --federated-subject ISSUER SUBJECT
                       a JWT of a configured federation (sigil federations add) whose iss is ISSUER
                       and sub is SUBJECT, e.g. system:serviceaccount:payments:api (federated_jwt)
  --require-claim NAME=VALUE
                       with --federated-subject: the JWT must also carry this claim with exactly
                       this string value (repeat for several; e.g. repository=org/repo)
  --tls-subject-dn DN  a client certificate (chaining to TLS_CLIENT_CA_FILE) with this subject DN
                       (RFC 8705 tls_client_auth)
  --tls-san-dns V, --tls-san-uri V, --tls-san-ip V, --tls-san-email V
                       or one with this subjectAltName (tls_client_auth)
  --self-signed-cert-file PEM
                       a file with the client's certificate(s); Sigil keeps their SHA-256
                       thumbprints (self_signed_tls_client_auth); may repeat; a private key in the
                       file is refused before sending

  --token-binding B    dpop (default: tokens carry cnf.jkt of the DPoP key) or mtls (tokens carry
                       cnf.x5t#S256 of the client certificate; DPoP is then optional); mtls needs a
                       certificate-capable credential (--spiffe-id, --tls-*, --self-signed-cert-file)
  --scope "a b"        scopes the client may ask for (space-separated; may repeat)
  --audience URI       an API the client may get tokens for (repeat for several);
                       the first is the default audience
  --serves URI         an API this client is, for token exchange (repeat for several)
  --grant-types g1,g2  default client_credentials; also
                       urn:ietf:params:oauth:grant-type:token-exchange, refresh_token
  --dpop MODE          required (default) or optional (then bearer tokens are allowed)
  --can-introspect     may introspect any token (for gateways)`,
    options: {
      name: { type: 'string' },
      'jwks-file': { type: 'string' },
      'jwks-uri': { type: 'string' },
      scope: { type: 'string', multiple: true },
      audience: { type: 'string', multiple: true },
      serves: { type: 'string', multiple: true },
      'grant-types': { type: 'string' },
      dpop: { type: 'string' },
      'can-introspect': { type: 'boolean' },
      'spiffe-id': { type: 'string' },
      'federated-subject': { type: 'string' },
      'require-claim': { type: 'string', multiple: true },
      'tls-subject-dn': { type: 'string' },
      'tls-san-dns': { type: 'string' },
      'tls-san-uri': { type: 'string' },
      'tls-san-ip': { type: 'string' },
      'tls-san-email': { type: 'string' },
      'self-signed-cert-file': { type: 'string', multiple: true },
      'token-binding': { type: 'string' },
    },
    // SUBJECT, the second value of --federated-subject
    optionalPositionals: ['SUBJECT'],
    run: create,
  },
  {
    words: ['clients', 'list'],
    summary: 'list every client, active and revoked',
    usage: 'clients list [--json]',
    help: 'Prints every client; with --json, an array of client objects.',
    options: {},
    run: list,
  },
  {
    words: ['clients', 'show'],
    summary: 'show one client',
    usage: 'clients show ID [--json]',
    help: '  ID  the client_id (from `sigil clients create` or `sigil clients list`)',
    options: {},
    positionals: ['ID'],
    run: show,
  },
  {
    words: ['clients', 'revoke'],
    summary: 'revoke a client: no new tokens, and every token it holds is refused',
    usage: 'clients revoke ID [--reason TEXT] [--json]',
    help: `  ID             the client_id to revoke
  --reason TEXT  why, kept with the client and in the audit log (at most ${MAX_REASON} characters)

Revoking is final and idempotent: revoking a revoked client succeeds and changes nothing (the first
reason is kept). The admin client cannot be revoked. Prints the client, with status "revoked".`,
    options: {
      reason: { type: 'string' },
    },
    positionals: ['ID'],
    run: revoke,
  },
  {
    words: ['clients', 'keys', 'set'],
    summary: 'replace a client\'s registered public keys',
    usage: 'clients keys set ID --jwks-file F [--json]',
    help: `  ID             the client_id whose keys to replace
  --jwks-file F  a file with the client's new PUBLIC keys as a JWKS ({"keys": [...]}), replacing all of
                 its registered keys (or its jwks_uri); refused before sending if it holds private
                 members (d, p, q, ...)

To rotate without an outage, put both the old and the new key in the file, move the client to the
new key, then set the file again with only the new key. Prints the client with its new keys.`,
    options: {
      'jwks-file': { type: 'string' },
    },
    positionals: ['ID'],
    run: setKeys,
  },
];
