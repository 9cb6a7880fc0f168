// What every CLI command is: the words that name it, its options (node:util parseArgs), its help, and
// a run function that returns both forms of its result. main.ts owns parsing, printing and exit codes,
// so a new command is one object in one file.
import type { ParseArgsOptionsConfig } from 'node:util';
import { UsageError } from './errors.js';

export type OptionValues = { [name: string]: string | boolean | string[] | undefined };

/** The outside world as a command sees it; passed in rather than read globally so tests can drive main in-process. */
export interface CliIo {
  env: Record<string, string | undefined>;
  cwd: string;
  /** warnings that must not pollute stdout (which may carry the one JSON document) */
  warn(message: string): void;
}

export interface CommandInput {
  values: OptionValues;
  positionals: string[];
  io: CliIo;
}

export interface CommandResult {
  /** what `--json` prints: exactly this, as one JSON document */
  json: unknown;
  /** what is printed without `--json` */
  human: string;
}

export interface Command {
  /** the words that select it, e.g. ['clients', 'create'] */
  words: string[];
  /** one line for the command list */
  summary: string;
  /** the usage line, after `sigil ` */
  usage: string;
  /** the options and arguments explained, for --help */
  help: string;
  /** its own options; --json and --help are added by main */
  options: ParseArgsOptionsConfig;
  /** names of its positional arguments, all required */
  positionals?: string[];
  /** names of positional arguments it may take after those (the command checks when they are needed) */
  optionalPositionals?: string[];
  /** a service that runs until a signal: no deadline on its run */
  longRunning?: boolean;
  run(input: CommandInput): Promise<CommandResult>;
}

// Typed accessors: parseArgs values are a loose record, and each command knows what it declared.

export function stringOption(values: OptionValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function requiredString(values: OptionValues, name: string): string {
  const v = stringOption(values, name);
  if (v === undefined || v.trim() === '') throw new UsageError(`--${name} is required`);
  return v;
}

export function listOption(values: OptionValues, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

export function flag(values: OptionValues, name: string): boolean {
  return values[name] === true;
}

/** The bound the server puts on a revocation reason (a string of at most 500 characters), checked before sending. */
export const MAX_REASON = 500;

/** --reason TEXT of the revoke commands: optional, but not blank and not longer than the server keeps. */
export function reasonOption(values: OptionValues): string | undefined {
  const reason = stringOption(values, 'reason');
  if (reason === undefined) return undefined;
  if (!reason.trim()) throw new UsageError('--reason needs some text (or leave it out)');
  if (reason.length > MAX_REASON) throw new UsageError(`--reason is ${reason.length} characters long; at most ${MAX_REASON}`);
  return reason;
}
