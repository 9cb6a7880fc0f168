// How a request body Sigil has already read reaches oidc-provider. Its body parser
// (lib/shared/selective_body.js) reads `ctx.req` when it is readable, through req.iterator(); a
// pre-parsed ctx.request.body is accepted too, but makes oidc-provider print a WARNING line on stderr
// (not a JSON log line) and, for an object, parse the form twice. So the bytes read and checked by
// the body guard are handed over as a readable request that yields them once (pinned in
// test/oidc/oidc-provider-contract.test.ts).
import type { IncomingMessage } from 'node:http';

/** `req` as oidc-provider will read it: `body`, in one chunk, without touching the socket again. */
export function providerReadable(req: IncomingMessage, body: Buffer): IncomingMessage {
  return Object.create(req, {
    readable: { value: true },
    readableEncoding: { value: null },
    // for-await accepts a plain iterator: no async generator per request
    iterator: { value: () => [body][Symbol.iterator]() },
  }) as IncomingMessage;
}
