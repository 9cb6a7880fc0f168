// `sigil tokens revoke JTI`: revoke one access token by its jti through the admin API. The server keeps
// the revocation until the token would have expired, and refuses the token everywhere from then on.
import { decodeJwt } from 'jose';
import { AdminSession } from './admin-session.js';
import { MAX_REASON, reasonOption, type Command, type CommandInput, type CommandResult } from './command.js';
import { UsageError } from './errors.js';
import { formatTokenRevocation, type TokenRevocationObject } from './output.js';

/** The server's bound on a jti (a non-empty string of at most 200 characters). */
const MAX_JTI = 200;

/** The jti of a whole JWT pasted in its place, if it is one: the likeliest mistake, named as such. */
function jtiOfPastedJwt(value: string): string | undefined {
  if (value.split('.').length !== 3) return undefined;
  try {
    const { jti } = decodeJwt(value);
    return typeof jti === 'string' ? jti : '';
  } catch {
    return undefined;
  }
}

function jtiArg(raw: string | undefined): string {
  const jti = raw ?? '';
  if (!jti.trim()) throw new UsageError('give the jti of the token to revoke');
  const pasted = jtiOfPastedJwt(jti);
  if (pasted !== undefined) {
    throw new UsageError(pasted
      ? `JTI is a whole token (a JWT), not its jti; its jti claim is ${JSON.stringify(pasted)}: run \`sigil tokens revoke ${pasted}\``
      : 'JTI is a whole token (a JWT) without a jti claim; give the jti of the token to revoke');
  }
  if (jti.length > MAX_JTI) throw new UsageError(`JTI is ${jti.length} characters long; a jti Sigil issues is at most ${MAX_JTI}`);
  return jti;
}

async function revoke({ positionals: [raw], values, io }: CommandInput): Promise<CommandResult> {
  const jti = jtiArg(raw);
  const reason = reasonOption(values);
  const session = await AdminSession.open(io);
  const record = await session.call<TokenRevocationObject>('POST', '/admin/tokens/revoke', { jti, ...(reason === undefined ? {} : { reason }) });
  const headline = record.known
    ? `Token revoked: it is refused from now on (it would have expired at ${record.expires_at}).`
    : `Token revoked, but Sigil has no record of issuing jti ${JSON.stringify(jti)} (check it). Should a token with this jti appear, it is refused until ${record.expires_at}.`;
  return { json: record, human: `${headline}\n\n${formatTokenRevocation(record)}` };
}

export const tokenCommands: Command[] = [
  {
    words: ['tokens', 'revoke'],
    summary: 'revoke one access token by its jti',
    usage: 'tokens revoke JTI [--reason TEXT] [--json]',
    help: `  JTI            the token's jti claim (not the whole token)
  --reason TEXT  why, kept with the revocation and in the audit log (at most ${MAX_REASON} characters)

The token is refused everywhere from then on (introspection answers {"active": false}, its status
list bit is set). Revoking is idempotent. Prints the revocation record; "known" is false when Sigil
has no record of issuing that jti (it is still recorded, and refused should it ever appear).`,
    options: {
      reason: { type: 'string' },
    },
    positionals: ['JTI'],
    run: revoke,
  },
];
