// One GET to a URL someone else chose, bounded in every dimension a partner (or an attacker posing as
// one) could stretch: the destination (destination.ts), the address connected to (pinned-resolution.ts),
// the time (one deadline for DNS, connect, TLS, answer and body), the size, redirects (never followed)
// and TLS (the certificate must name the host). What the body means is the caller's business.
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { canonicalHost, destinationUrlProblem, OutboundRefused, type DestinationPolicy, type OutboundPurpose } from './destination.js';
import { pinnedLookup, resolveChecked, type ResolvedAddress, type Resolver } from './pinned-resolution.js';

export interface FetchLimits {
  /** the whole fetch (DNS, connect, TLS, answer, body) must finish within this */
  timeoutMs: number;
  /** the largest body accepted */
  maxBytes: number;
}

export interface BoundedGet {
  policy: DestinationPolicy & FetchLimits;
  purpose: OutboundPurpose;
  resolve: Resolver;
  /** the Accept header */
  accept: string;
  /** the User-Agent header: partners see it in their logs */
  userAgent: string;
  /** extra trusted CAs (tests with a self-signed partner) */
  ca?: string | Buffer;
  /** the caller's own deadline, besides `timeoutMs` */
  signal?: AbortSignal;
}

export interface BoundedAnswer {
  body: Buffer;
  headers: http.IncomingHttpHeaders;
  /** the address the connection went to */
  address: string;
}

/** GET `url` within the bounds: a 200 answer and its whole body, or an OutboundRefused saying why not. */
export async function boundedGet(url: string, get: BoundedGet): Promise<BoundedAnswer> {
  const { policy, purpose } = get;
  const urlProblem = destinationUrlProblem(url, policy, purpose);
  if (urlProblem) throw new OutboundRefused(urlProblem);
  const u = new URL(url);
  const host = canonicalHost(u.hostname);
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new OutboundRefused(`${purpose.field} did not answer within ${policy.timeoutMs} ms`)), policy.timeoutMs);
  // oidc-provider gives its fetches a deadline of its own (2.5 s)
  const onOuterAbort = () => deadline.abort(new OutboundRefused(`${purpose.field} did not answer in time`));
  if (get.signal?.aborted) onOuterAbort();
  else get.signal?.addEventListener('abort', onOuterAbort, { once: true });
  try {
    const pinned = await resolveChecked(host, policy, purpose, get.resolve, deadline.signal);
    return await request(u, host, pinned, get, deadline.signal);
  } finally {
    clearTimeout(timer);
    get.signal?.removeEventListener('abort', onOuterAbort);
  }
}

function request(u: URL, host: string, pinned: ResolvedAddress, get: BoundedGet, deadline: AbortSignal): Promise<BoundedAnswer> {
  const { policy, purpose: { field } } = get;
  const secure = u.protocol === 'https:';
  return new Promise<BoundedAnswer>((resolve, reject) => {
    const refuse = (message: string) => reject(new OutboundRefused(message));
    // a body that never finishes has sent its headers already: the deadline must end it too
    const onDeadline = () => reject(deadline.reason as unknown);
    if (deadline.aborted) return onDeadline();
    deadline.addEventListener('abort', onDeadline, { once: true });
    const req = (secure ? https : http).request({
      protocol: u.protocol,
      hostname: host,
      port: u.port || (secure ? 443 : 80),
      path: `${u.pathname}${u.search}`,
      method: 'GET',
      headers: { accept: get.accept, 'user-agent': get.userAgent, host: u.host },
      lookup: pinnedLookup(pinned),
      agent: false,
      signal: deadline,
      ...(secure ? { servername: isIP(host) ? undefined : host, ca: get.ca, rejectUnauthorized: true } : {}),
    }, (res) => {
      const status = res.statusCode ?? 0;
      const fail = (message: string) => {
        res.destroy();
        refuse(message);
      };
      if (status >= 300 && status < 400) return fail(`${field} answered with a redirect (${status}); redirects are not followed, register the final URL`);
      if (status !== 200) return fail(`${field} answered ${status}, expected 200`);
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > policy.maxBytes) return fail(`${field} document is larger than ${policy.maxBytes} bytes`);
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > policy.maxBytes) return fail(`${field} document is larger than ${policy.maxBytes} bytes`);
        chunks.push(chunk);
      });
      res.on('error', () => refuse(`${field} answer was cut off`));
      res.on('end', () => {
        if (size > policy.maxBytes) return;
        resolve({ body: Buffer.concat(chunks, size), headers: res.headers, address: pinned.address });
      });
    });
    req.on('error', (err) => {
      if (err instanceof OutboundRefused) return reject(err);
      const code = (err as NodeJS.ErrnoException).code;
      if (deadline.aborted) return reject(deadline.reason instanceof OutboundRefused ? deadline.reason : new OutboundRefused(`${field} did not answer within ${policy.timeoutMs} ms`));
      if (code && /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO|HOSTNAME|ERR_TLS/.test(code)) return refuse(`${field} TLS certificate is not valid for ${host} (${code})`);
      refuse(`${field} could not be reached${code ? ` (${code})` : ''}`);
    });
    req.on('close', () => deadline.removeEventListener('abort', onDeadline));
    req.end();
  });
}
