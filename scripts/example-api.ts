// An API protected by sigil/verifier: the README quickstart's last steps. Every request needs a
// DPoP-bound token for the audience with the scope, and a fresh proof; the API answers with the
// claims it received. Revocations reach it through the issuer's status-list change stream.
//
//   npm run example-api -- [--issuer http://localhost:3000 (or SIGIL_ISSUER)] [--port 4000 (or PORT)]
//       [--audience https://api.example.com/orders] [--scope orders:read]
//
// In your own code the import is `from 'sigil/verifier'`; this script sits inside the package.
import { parseArgs } from 'node:util';
import Koa from 'koa';
import { createVerifier, koaVerifier, type AccessTokenClaims } from '../src/verifier/index.js';

const { values: opt } = parseArgs({
  options: {
    issuer: { type: 'string', default: process.env.SIGIL_ISSUER ?? 'http://localhost:3000' },
    port: { type: 'string', default: process.env.PORT ?? '4000' },
    audience: { type: 'string', default: 'https://api.example.com/orders' },
    scope: { type: 'string', default: 'orders:read' },
  },
});

const verify = createVerifier({ issuer: opt.issuer, audience: opt.audience, scopes: opt.scope.split(' ').filter(Boolean) });
// the proof's htu names the URL the client called: here the API's own address
const publicUrl = `http://localhost:${opt.port}`;
const app = new Koa();
app.use(koaVerifier(verify, { baseUrl: publicUrl }));
app.use((ctx) => {
  const claims = ctx.state.sigil as AccessTokenClaims;
  ctx.body = { message: `hello ${claims.client_id}, you called ${ctx.method} ${ctx.path}`, claims };
});

const server = app.listen(Number(opt.port));
server.on('listening', () => {
  console.log(JSON.stringify({ listening: publicUrl, issuer: opt.issuer, audience: opt.audience, scope: opt.scope }));
  // the issuer's keys and metadata now, so the first call does not wait (and a wrong --issuer shows at once)
  verify.ready().catch((err: Error) => console.error(`example-api: the issuer ${opt.issuer} cannot be reached yet (${err.message}); retrying on the first call`));
});
server.on('error', (err) => {
  console.error(`example-api: ${err.message}`);
  process.exit(1);
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close();
    void verify.close().then(() => process.exit(0));
  });
}
