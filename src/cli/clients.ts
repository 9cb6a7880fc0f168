// `sigil clients create|list|show`: register and inspect the clients of the server through the admin API.
import { GRANT_TYPES } from '../storage/client-store.js';
import { AdminSession } from './admin-session.js';
import {
  flag, listOption, requiredString, stringOption, type Command, type CommandInput, type CommandResult, type OptionValues,
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

async function show({ positionals: [id], io }: CommandInput): Promise<CommandResult> {
  if (!id?.trim()) throw new UsageError('give the client_id to show');
  const session = await AdminSession.open(io);
  try {
    const client = await session.call<ClientObject>('GET', `/admin/clients/${encodeURIComponent(id)}`);
    return { json: client, human: formatClient(client) };
  } catch (err) {
    if (err instanceof ServerError && err.status === 404) throw new CliError(`no client with client_id ${JSON.stringify(id)}`);
    throw err;
  }
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
];
