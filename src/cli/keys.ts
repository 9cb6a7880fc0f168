// `sigil keys list` / `sigil keys rotate`: Sigil's own signing keys and their staged rotation.
import { AdminSession } from './admin-session.js';
import type { Command, CommandResult } from './command.js';
import { table } from './output.js';

interface KeyView {
  kid: string;
  alg: string;
  state: 'next' | 'active' | 'retiring' | 'retired';
  created_at: string;
  activates_at: string;
  retires_at?: string;
}

function keyTable(keys: KeyView[]): string {
  return table(['KID', 'ALG', 'STATE', 'ACTIVATES_AT', 'RETIRES_AT'], keys.map((k) => [k.kid, k.alg, k.state, k.activates_at, k.retires_at ?? '-']));
}

async function list({ io }: { io: Parameters<Command['run']>[0]['io'] }): Promise<CommandResult> {
  const session = await AdminSession.open(io);
  const keys = await session.call<KeyView[]>('GET', '/admin/keys');
  return { json: keys, human: keyTable(keys) };
}

async function rotate({ io }: { io: Parameters<Command['run']>[0]['io'] }): Promise<CommandResult> {
  const session = await AdminSession.open(io);
  const result = await session.call<{ staged: KeyView; keys: KeyView[] }>('POST', '/admin/keys/rotate');
  return {
    json: result,
    human: `Key ${result.staged.kid} staged: published in the JWKS now, signing from ${result.staged.activates_at}.\n\n${keyTable(result.keys)}`,
  };
}

export const keyCommands: Command[] = [
  {
    words: ['keys', 'list'],
    summary: "the server's signing keys and their states",
    usage: 'keys list [--json]',
    help: `States: next (published, not signing yet), active (signs), retiring (replaced, published until
everything it signed has expired), retired (no longer published).`,
    options: {},
    run: list,
  },
  {
    words: ['keys', 'rotate'],
    summary: 'stage a new signing key',
    usage: 'keys rotate [--json]',
    help: `The new key is published in the JWKS at once and starts signing only after the JWKS max-age has
passed, so every cache has it; the old key stays published until every token it signed has expired.
Every instance follows the same schedule without a restart. Refused while a rotation is staged.`,
    options: {},
    run: rotate,
  },
];
