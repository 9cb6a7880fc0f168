// The `sigil` entry point: find the command named by the leading words, parse its flags strictly
// (node:util parseArgs), run it, and print its result — one JSON document with --json — or its error:
// one line on stderr, exit 2 for usage errors and 1 for everything else. No stack traces for
// expected failures.
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { clientCommands } from './clients.js';
import type { CliIo, Command, CommandResult, OptionValues } from './command.js';
import { CliError, UsageError } from './errors.js';
import { initCommands } from './init.js';
import { registrationTokenCommands } from './registration-tokens.js';
import { sigilUrlForDisplay } from './settings.js';
import { escapeJson, escapeText, escapeValue } from './terminal-text.js';
import { tokenCommands } from './tokens.js';
import { keyCommands } from './keys.js';
import { verifyServerCommands } from './verify-server.js';
import { trustCommands } from './trust.js';

/** Every command; a new command group is one file exporting its list, added here. */
export const COMMANDS: Command[] = [...initCommands, ...clientCommands, ...tokenCommands, ...keyCommands, ...registrationTokenCommands, ...trustCommands, ...verifyServerCommands];

/** Flags every command takes; also accepted before the command words (`sigil --json clients list`). */
const COMMON_OPTIONS: ParseArgsOptionsConfig = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};
const COMMON_FLAGS = new Set(['--json', '--help', '-h']);

/**
 * The discovery and token requests (src/client/oauth-client.ts) take no abort signal; this bounds a
 * whole run so a server that accepts connections but never answers cannot hang a script forever.
 */
const RUN_DEADLINE_MS = 60_000;

export interface Output {
  stdout(text: string): Promise<void>;
  stderr(text: string): Promise<void>;
}

const sameWords = (a: string[], b: string[]) => a.length === b.length && a.every((w, i) => w === b[i]);
const startsWith = (words: string[], prefix: string[]) => prefix.every((w, i) => words[i] === w);

function topLevelHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.words.join(' ').length + (c.positionals?.length ? c.positionals.join(' ').length + 1 : 0)));
  const lines = COMMANDS.map((c) => `  ${[...c.words, ...(c.positionals ?? [])].join(' ').padEnd(width)}  ${c.summary}`);
  return `sigil: the Sigil admin CLI

Usage: sigil <command> [options]

Commands:
${lines.join('\n')}

Every command takes --json (print exactly one JSON document on stdout) and --help.

Environment:
  SIGIL_URL            where the server is (default http://localhost:3000); plain http only to
                       localhost, 127.0.0.0/8 or [::1]
  SIGIL_INSECURE_HTTP  true: allow plain http to another host anyway, with a warning (test networks)
  SIGIL_KEYS_DIR       where the admin key lives (default ./keys; the key file must be mode 0600)
`;
}

function groupHelp(prefix: string[]): string {
  const group = COMMANDS.filter((c) => startsWith(c.words, prefix));
  return `Usage:\n${group.map((c) => `  sigil ${c.usage}`).join('\n')}\n\nRun \`sigil ${prefix.join(' ')} <command> --help\` for details.\n`;
}

function commandHelp(c: Command): string {
  return `Usage: sigil ${c.usage}\n\n${c.summary}\n\n${c.help}\n\n  --json               print exactly one JSON document on stdout\n  --help               this help\n`;
}

interface Resolved {
  /** the command words found (a group prefix when `command` is undefined) */
  words: string[];
  command: Command | undefined;
  /** the first word that matched nothing, if any */
  unknownWord: string | undefined;
  /** what parseArgs gets: every argument that is not a command word */
  rest: string[];
}

function resolve(argv: string[]): Resolved {
  const leading: string[] = [];
  let i = 0;
  while (i < argv.length && COMMON_FLAGS.has(argv[i]!)) leading.push(argv[i++]!);
  const words: string[] = [];
  let command: Command | undefined;
  // command words come first; the first word that extends no command is an argument (or a typo)
  while (!command && i < argv.length && !argv[i]!.startsWith('-')) {
    const candidate = [...words, argv[i]!];
    if (!COMMANDS.some((c) => startsWith(c.words, candidate))) break;
    words.push(argv[i++]!);
    command = COMMANDS.find((c) => sameWords(c.words, words));
  }
  const next = argv[i];
  const unknownWord = !command && next !== undefined && !next.startsWith('-') ? next : undefined;
  return { words, command, unknownWord, rest: [...leading, ...argv.slice(i)] };
}

/**
 * A word like `-WXHvN…` is no option of the CLI (its only short flag is -h): it is an id. A token's
 * jti and other base64url ids begin with "-" one time in 64, and `sigil tokens revoke <jti>` must
 * take them as they are. Such words pass parseArgs as placeholders and are put back after.
 */
const DASHED_ID = /^-[^-]./;
const placeholder = (i: number) => `\u0000arg${i}`;

function restoreDashed(value: unknown, dashed: Map<string, string>): unknown {
  if (typeof value === 'string') return dashed.get(value) ?? value;
  if (Array.isArray(value)) return value.map((v) => restoreDashed(v, dashed));
  return value;
}

/** parseArgs' own messages are long and mention internals; keep the part a person needs. */
function parseFlags(c: Command, args: string[]): { values: OptionValues; positionals: string[] } {
  const dashed = new Map<string, string>();
  const masked = args.map((a, i) => {
    if (!DASHED_ID.test(a)) return a;
    dashed.set(placeholder(i), a);
    return placeholder(i);
  });
  try {
    const parsed = parseArgs({ args: masked, options: { ...c.options, ...COMMON_OPTIONS }, strict: true, allowPositionals: true }) as { values: OptionValues; positionals: string[] };
    if (!dashed.size) return parsed;
    const values = Object.fromEntries(Object.entries(parsed.values).map(([k, v]) => [k, restoreDashed(v, dashed)])) as OptionValues;
    return { values, positionals: parsed.positionals.map((p) => dashed.get(p) ?? p) };
  } catch (err) {
    const e = err as Error & { code?: string };
    if (!e.code?.startsWith('ERR_PARSE_ARGS')) throw err;
    const unknown = /Unknown option '([^']+)'/.exec(e.message);
    if (unknown) throw new UsageError(`unknown option ${unknown[1]}`);
    // "Option '--name <value>' argument missing" / "... argument is ambiguous" (next word is a flag)
    const noValue = /^Option '(?:-\w, )?(--[\w-]+)[^']*' argument (?:missing|is ambiguous)/.exec(e.message);
    if (noValue) throw new UsageError(`${noValue[1]} needs a value (write ${noValue[1]}=VALUE for a value starting with "-")`);
    throw new UsageError(e.message.split('\n')[0]!.replace(/\.$/, ''));
  }
}

function checkPositionals(c: Command, positionals: string[]): void {
  const expected = c.positionals ?? [];
  if (positionals.length < expected.length) throw new UsageError(`missing ${expected.slice(positionals.length).join(' ')}`);
  const most = expected.length + (c.optionalPositionals?.length ?? 0);
  if (positionals.length > most) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[most])}`);
}

/** Escaped for the terminal either way: JSON with \u escapes (the same document), text with visible escapes. */
function render(result: CommandResult, json: boolean): string {
  return json ? `${escapeJson(JSON.stringify(result.json, null, 2))}\n` : `${escapeText(result.human)}\n`;
}

async function withDeadline<T>(work: Promise<T>, where: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CliError(`no answer from Sigil at ${where} within ${RUN_DEADLINE_MS / 1000} s`)), RUN_DEADLINE_MS);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Run one command line; resolves to the exit code. It never exits the process (main() does), so it can run in-process. */
export async function runCli(argv: string[], io: CliIo, out: Output): Promise<number> {
  const { words, command, unknownWord, rest } = resolve(argv);
  const wantsHelp = rest.some((a) => a === '--help' || a === '-h');
  const usageHint = command ? `sigil ${command.words.join(' ')} --help` : 'sigil --help';
  try {
    if (!command) {
      if (unknownWord !== undefined) throw new UsageError(`unknown command: sigil ${[...words, unknownWord].join(' ')}`);
      const help = words.length ? groupHelp(words) : topLevelHelp();
      if (wantsHelp) {
        await out.stdout(help);
        return 0;
      }
      if (!words.length && rest.length) throw new UsageError(`${rest[0]} needs a command`);
      await out.stderr(help);
      return 2;
    }
    const { values, positionals } = parseFlags(command, rest);
    const json = values.json === true;
    if (values.help) {
      const help = commandHelp(command);
      await out.stdout(json ? `${JSON.stringify({ command: `sigil ${command.words.join(' ')}`, usage: `sigil ${command.usage}`, help })}\n` : help);
      return 0;
    }
    checkPositionals(command, positionals);
    const running = command.run({ values, positionals, io });
    const result = command.longRunning ? await running : await withDeadline(running, sigilUrlForDisplay(io));
    await out.stdout(render(result, json));
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      await out.stderr(`sigil: ${escapeValue(err.message)}\n(see \`${escapeValue(err.seeAlso ?? usageHint)}\`)\n`);
      return 2;
    }
    if (err instanceof CliError) {
      await out.stderr(`sigil: ${escapeValue(err.message)}\n`);
      return 1;
    }
    // a bug, not an expected failure: say so, with the stack only on request
    const e = err as Error;
    await out.stderr(`sigil: unexpected error: ${escapeValue(e?.message ?? String(err))}\n${io.env.SIGIL_DEBUG ? `${escapeText(String(e?.stack))}\n` : '(set SIGIL_DEBUG=1 for details)\n'}`);
    return 1;
  }
}

/** Write and wait until it is flushed, so exiting right after loses nothing even on a slow pipe. */
function writer(stream: NodeJS.WriteStream): (text: string) => Promise<void> {
  return (text) => new Promise((resolve) => {
    stream.write(text, () => resolve());
  });
}

/** What bin/sigil.js calls: the real process environment, then exit (a stalled socket must not keep it alive). */
export async function main(): Promise<never> {
  const io: CliIo = {
    env: process.env,
    cwd: process.cwd(),
    warn: (message) => process.stderr.write(`sigil: ${escapeValue(message)}\n`),
  };
  const code = await runCli(process.argv.slice(2), io, { stdout: writer(process.stdout), stderr: writer(process.stderr) });
  process.exit(code);
}
