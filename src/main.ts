// Process entry: config → server → graceful stop on SIGTERM/SIGINT.
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './log.js';
import { startSigil } from './sigil.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sigil: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  process.on('unhandledRejection', (reason) => log.error({ reason: (reason as Error)?.message ?? String(reason) }, 'unhandled rejection'));
  const sigil = await startSigil(config, log);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'shutting down');
      const exit = (code: number) => log.flush(() => process.exit(code));
      sigil.close().then(() => exit(0), () => exit(1));
    });
  }
}

main().catch((err: Error) => {
  process.stderr.write(`sigil: failed to start: ${err.message}\n`);
  process.exit(1);
});
