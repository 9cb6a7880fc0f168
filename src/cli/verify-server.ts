// `sigil verify-server --config FILE`: runs the forward-auth service (src/gateway) until SIGTERM or
// SIGINT. A config file that cannot be used is a usage error (exit 2), like a bad flag.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { GatewayConfigError, parseGatewayConfig } from '../gateway/config.js';
import { startVerifyService } from '../gateway/service.js';
import { requiredString, type Command } from './command.js';
import { UsageError } from './errors.js';

const SEE = 'sigil verify-server --help';

function port(value: string | undefined): number {
  if (value === undefined || value === '') return 3100;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new UsageError(`VERIFY_PORT must be a port number (0-65535), not ${JSON.stringify(value)}`, SEE);
  return n;
}

function issuerUrl(value: string | undefined): string {
  if (!value) throw new UsageError('SIGIL_ISSUER is required: the issuer whose tokens are accepted (e.g. https://sigil.example.com)', SEE);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`SIGIL_ISSUER is not a URL: ${JSON.stringify(value)}`, SEE);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new UsageError('SIGIL_ISSUER must be an http(s) URL', SEE);
  return value;
}

export const verifyServerCommands: Command[] = [
  {
    words: ['verify-server'],
    summary: 'run the forward-auth service for nginx, Caddy, Traefik and Envoy',
    usage: 'verify-server --config FILE',
    help: `  --config FILE        the routes and trusted gateways (JSON; see docs/GATEWAYS.md)

Environment:
  SIGIL_ISSUER         the issuer whose tokens are accepted (required)
  VERIFY_PORT          where to listen (default 3100)
  REDIS_URL            optional: DPoP proof replay records shared by every replica

Runs until SIGTERM or SIGINT.`,
    options: { config: { type: 'string' } },
    longRunning: true,
    async run({ values, io }) {
      const file = path.resolve(io.cwd, requiredString(values, 'config'));
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read --config ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, SEE);
      }
      let config;
      try {
        config = parseGatewayConfig(text, file);
      } catch (err) {
        if (err instanceof GatewayConfigError) throw new UsageError(err.message, SEE);
        throw err;
      }
      const issuer = issuerUrl(io.env.SIGIL_ISSUER);
      const listenPort = port(io.env.VERIFY_PORT);
      const service = await startVerifyService({
        config, issuer, port: listenPort, redisUrl: io.env.REDIS_URL || undefined,
        log: (event, detail) => io.warn(`${event}${detail ? ` ${JSON.stringify(detail)}` : ''}`),
      });
      io.warn(`verify-server listening on port ${service.port} (issuer ${issuer}, ${config.routes.length} routes, trusted ${config.trustedProxies.join(' ')})`);
      const signal = await new Promise<string>((resolve) => {
        for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => resolve(s));
      });
      await service.close();
      return { json: { stopped: signal }, human: `verify-server stopped (${signal})` };
    },
  },
];
