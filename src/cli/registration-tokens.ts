// `sigil registration-tokens create|list|revoke`: initial access tokens for partners' dynamic
// registration (RFC 7591). The token is shown once, by `create`; the server keeps only a hash.
import { AdminSession } from './admin-session.js';
import { listOption, stringOption, type Command, type CommandInput, type CommandResult, type OptionValues } from './command.js';
import { CliError, ServerError, UsageError } from './errors.js';
import { fields, table } from './output.js';

/** The server's bounds (src/server/registration-api.ts), checked before sending. */
const MAX_EXPIRES_IN = 30 * 86_400;
const MAX_USES = 1000;

/** What the admin API answers for an initial access token (`token` only when it was just created). */
export interface RegistrationTokenObject {
  token?: string;
  id: string;
  status: 'active' | 'expired' | 'used_up' | 'revoked';
  expires_at: string;
  uses: number;
  uses_left: number;
  scope: string;
  audiences: string[];
  created_at: string;
  created_by: string;
  revoked_at?: string;
  revoked_by?: string;
}

function wholeNumberOption(values: OptionValues, name: string, min: number, max: number): number | undefined {
  const raw = stringOption(values, name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function formatToken(t: RegistrationTokenObject): string {
  const rows: Array<[string, string]> = [
    ['id', t.id],
    ['status', t.status],
    ['expires_at', t.expires_at],
    ['uses', `${t.uses_left} of ${t.uses} left`],
    ['scope', t.scope || '-'],
    ['audiences', t.audiences.length ? t.audiences.join(', ') : '-'],
    ['created_at', t.created_at],
    ['created_by', t.created_by],
  ];
  if (t.revoked_at) rows.push(['revoked_at', t.revoked_at], ['revoked_by', t.revoked_by ?? '-']);
  return fields(rows);
}

async function create({ values, io }: CommandInput): Promise<CommandResult> {
  const expiresIn = wholeNumberOption(values, 'expires-in', 1, MAX_EXPIRES_IN);
  const uses = wholeNumberOption(values, 'uses', 1, MAX_USES);
  const audiences = listOption(values, 'audience');
  const badAudience = audiences.find((a) => !URL.canParse(a));
  if (badAudience !== undefined) throw new UsageError(`--audience must be an absolute URI, got ${JSON.stringify(badAudience)}`);
  const body = {
    ...(expiresIn === undefined ? {} : { expires_in: expiresIn }),
    ...(uses === undefined ? {} : { uses }),
    scope: listOption(values, 'scope').flatMap((s) => s.split(/\s+/)).filter(Boolean).join(' '),
    audiences,
  };
  const session = await AdminSession.open(io);
  const created = await session.call<RegistrationTokenObject>('POST', '/admin/registration-tokens', body);
  if (!created.token) throw new CliError('Sigil answered without a token');
  return {
    json: created,
    human: `Initial access token created. It is shown only now; hand it to the partner over a secure channel.
Register with: POST ${session.server.issuer}/register  (Authorization: Bearer <token>)

${created.token}

${formatToken(created)}`,
  };
}

async function list({ io }: CommandInput): Promise<CommandResult> {
  const session = await AdminSession.open(io);
  const tokens = await session.call<RegistrationTokenObject[]>('GET', '/admin/registration-tokens');
  const human = tokens.length
    ? table(['ID', 'STATUS', 'USES LEFT', 'EXPIRES_AT', 'SCOPE'], tokens.map((t) => [t.id, t.status, `${t.uses_left}/${t.uses}`, t.expires_at, t.scope || '-']))
    : 'no initial access tokens';
  return { json: tokens, human };
}

async function revoke({ positionals: [raw], io }: CommandInput): Promise<CommandResult> {
  const id = raw?.trim();
  if (!id) throw new UsageError('give the id of the initial access token to revoke');
  // the whole token pasted instead of its id: take the id part, never send the secret
  const tokenId = /^sit_([A-Za-z0-9_-]+)\./.exec(id)?.[1] ?? id;
  const session = await AdminSession.open(io);
  let revoked: RegistrationTokenObject;
  try {
    revoked = await session.call<RegistrationTokenObject>('POST', `/admin/registration-tokens/${encodeURIComponent(tokenId)}/revoke`, {});
  } catch (err) {
    if (err instanceof ServerError && err.status === 404 && err.error === 'not_found') throw new CliError(`no initial access token with id ${JSON.stringify(tokenId)}`);
    throw err;
  }
  return { json: revoked, human: `Initial access token revoked: it registers no further client.\n\n${formatToken(revoked)}` };
}

export const registrationTokenCommands: Command[] = [
  {
    words: ['registration-tokens', 'create'],
    summary: 'create an initial access token for a partner\'s dynamic registration (RFC 7591)',
    usage: 'registration-tokens create [--expires-in SECONDS] [--uses N] [--scope "a b"] [--audience URI]... [--json]',
    help: `  --expires-in SECONDS  how long the token may be used (default 86400, at most ${MAX_EXPIRES_IN})
  --uses N              how many clients it may register (default 1: single-use; at most ${MAX_USES})
  --scope "a b"         the scopes every client it registers gets (space-separated; may repeat)
  --audience URI        an API those clients may get tokens for (repeat for several; the first is
                        the default audience)

Prints { "token": ..., "expires_at": ... } and the token's settings. The token is shown only once
(Sigil keeps an argon2id hash of it). The partner sends it as "Authorization: Bearer <token>" to
POST /register with its client metadata: token_endpoint_auth_method "private_key_jwt" and its public
keys as jwks or jwks_uri.`,
    options: {
      'expires-in': { type: 'string' },
      uses: { type: 'string' },
      scope: { type: 'string', multiple: true },
      audience: { type: 'string', multiple: true },
    },
    run: create,
  },
  {
    words: ['registration-tokens', 'list'],
    summary: 'list initial access tokens (never their secrets)',
    usage: 'registration-tokens list [--json]',
    help: '  Prints every initial access token: id, status (active, expired, used_up, revoked), uses left.',
    options: {},
    run: list,
  },
  {
    words: ['registration-tokens', 'revoke'],
    summary: 'revoke an initial access token',
    usage: 'registration-tokens revoke ID [--json]',
    help: `  ID  the token's id (as printed by create and list)

Clients it already registered are not affected; revoke those with \`sigil clients revoke\`.`,
    options: {},
    positionals: ['ID'],
    run: revoke,
  },
];
