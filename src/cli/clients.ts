// `sigil clients create|list|show|revoke` and `sigil clients keys set`: register, inspect, revoke and re-key
// the clients of the server through the admin API.
import { GRANT_TYPES } from '../clients/client-store.js';
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

/** Everything the create request will carry, checked locally first: nothing is sent when the input is wrong. */
async function newClientBody({ values, io }: CommandInput): Promise<Record<string, unknown>> {
  const name = requiredString(values, 'name');
  const jwksFile = stringOption(values, 'jwks-file');
  const jwksUri = stringOption(values, 'jwks-uri');
  if ((jwksFile === undefined) === (jwksUri === undefined)) throw new UsageError('give exactly one of --jwks-file or --jwks-uri');
  if (jwksUri !== undefined && !URL.canParse(jwksUri)) throw new UsageError(`--jwks-uri must be an absolute URL, got ${JSON.stringify(jwksUri)}`);
  const body: Record<string, unknown> = {
    name,
    ...(jwksFile !== undefined ? { jwks: await readJwksFile(jwksFile, io.cwd) } : { jwks_uri: jwksUri }),
    // --scope may be given once as "a b" or repeated; the server wants one space-delimited string
    scope: listOption(values, 'scope').flatMap((s) => s.split(/\s+/)).filter(Boolean).join(' '),
    audiences: listOption(values, 'audience'),
    serves: listOption(values, 'serves'),
    grant_types: grantTypes(values),
    dpop: dpopMode(values),
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
  // read and check the file first: a private key in it must never leave this machine
  const jwks = await readJwksFile(requiredString(values, 'jwks-file'), io.cwd);
  const session = await AdminSession.open(io);
  const client = await aboutClient(id, () => session.call<ClientObject>('PUT', clientPath(id, '/jwks'), { jwks }));
  return { json: client, human: `Keys replaced: the client's assertions must now be signed with one of these keys; the old ones are refused.\n\n${formatClient(client)}` };
}

export const clientCommands: Command[] = [
  {
    words: ['clients', 'create'],
    summary: 'register a client (private_key_jwt with your public keys)',
    usage: 'clients create --name N (--jwks-file F | --jwks-uri U) [--scope "a b"] [--audience URI]... [--serves URI]... [--grant-types g1,g2] [--dpop required|optional] [--can-introspect] [--json]',
    help: `  --name N             a name people recognise (required)
  --jwks-file F        a file with the client's PUBLIC keys as a JWKS ({"keys": [...]});
                       refused before sending if it holds private members (d, p, q, ...)
  --jwks-uri U         or: where the server fetches the client's JWKS (https)
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
    },
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
