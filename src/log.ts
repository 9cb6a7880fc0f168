// Structured JSON logs. Redaction is a second line of defence: code logs jti/client_id, never tokens,
// but any field that could carry a credential is censored should one slip into a log call.
import { pino, type Logger } from 'pino';

export type { Logger };

const CREDENTIAL_FIELDS = [
  'authorization', 'dpop', 'client_assertion', 'assertion', 'token', 'access_token', 'refresh_token',
  'subject_token', 'actor_token', 'proof', 'jwk', 'jwks', 'd', 'p', 'q', 'dp', 'dq', 'qi', 'privateKey', 'private_jwk',
];

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const paths = CREDENTIAL_FIELDS.flatMap((f) => [f, `*.${f}`, `req.headers.${f}`]);
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    // asynchronous writes: a log line per token must not block the event loop on a slow stdout
    (destination as pino.DestinationStream | undefined) ?? pino.destination({ dest: 1, sync: false }),
  );
}
