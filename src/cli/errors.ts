// The errors a command may end with on purpose. Each becomes one line on stderr and an exit code;
// anything else is a bug and is reported as such.

/** The command line itself is wrong (bad flag, missing argument, unusable input file): exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
  /** where to look for the right usage; main defaults it to the command's --help */
  constructor(message: string, readonly seeAlso?: string) {
    super(message);
  }
}

/** The command was well-formed but could not be carried out (server refusal, unreachable server...): exit 1. */
export class CliError extends Error {
  override name = 'CliError';
}

/** The server answered with an RFC 6749-style error body. Commands catch it to rephrase known cases. */
export class ServerError extends CliError {
  override name = 'ServerError';
  constructor(readonly status: number, readonly error: string, readonly description: string | undefined) {
    super(`Sigil refused the request: ${description ?? error} (${status} ${error})`);
  }
}
