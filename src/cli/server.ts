// Reaching a Sigil server: discovery, and the two URLs every endpoint has. Requests are SENT to the
// instance SIGIL_URL names, but every URL-bound value (DPoP htu, resource, bootstrap aud) is the
// ISSUER-based URL, because several instances share one ISSUER behind a balancer.
import { discover, type ServerMetadata } from '../client/oauth-client.js';
import type { CliIo } from './command.js';
import { CliError, ServerError } from './errors.js';
import { sigilUrl } from './settings.js';

export interface SigilServer {
  /** SIGIL_URL's origin: where requests go */
  origin: string;
  /** the server's issuer: the base of every URL-bound check */
  issuer: string;
  metadata: ServerMetadata;
  /** the ISSUER-based URL of a path (for htu, resource, aud) */
  issuerUrl(path: string): string;
  /** send a request for `path` to this instance; network failures become a clear CliError */
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

/** How long one admin-plane request may take before the CLI gives up on it. */
export const REQUEST_TIMEOUT_MS = 30_000;

/** No HTTP answer came back, so whether the server acted on the request is unknown. */
export class NoAnswer extends CliError {
  override name = 'NoAnswer';
  /** false when no connection was ever made, so the server certainly did not see the request */
  constructor(message: string, readonly maybeReceived: boolean) {
    super(message);
  }
}

/** socket errors that happen before a request can leave the machine */
const NEVER_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** Turn fetch's "TypeError: fetch failed" into what a person needs: which URL, and why. */
export function unreachable(origin: string, err: unknown): NoAnswer {
  if ((err as Error).name === 'TimeoutError') return new NoAnswer(`no answer from Sigil at ${origin} within ${REQUEST_TIMEOUT_MS / 1000} s`, true);
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (err as Error).message;
  return new NoAnswer(`cannot reach Sigil at ${origin}${why ? ` (${why})` : ''}`, !NEVER_CONNECTED.has(cause?.code ?? ''));
}

/** fetch rejects with a TypeError (cause: the socket error) when no answer came, or a TimeoutError from its signal */
export function isNetworkError(err: unknown): boolean {
  return (err instanceof TypeError && 'cause' in err) || (err as Error)?.name === 'TimeoutError';
}

/** `url`: SIGIL_URL, checked by the caller when it must be refused before anything else happens. */
export async function connect(io: CliIo, url: URL = sigilUrl(io)): Promise<SigilServer> {
  const { origin } = url;
  let metadata: ServerMetadata;
  try {
    metadata = await discover(origin);
  } catch (err) {
    if (isNetworkError(err)) throw unreachable(origin, err);
    // discover() throws on a non-2xx answer and on a body that is not JSON: either way, not Sigil
    throw new CliError(`${origin} does not look like a Sigil server: ${(err as Error).message}`);
  }
  if (typeof metadata?.issuer !== 'string' || typeof metadata.token_endpoint !== 'string' || !URL.canParse(metadata.token_endpoint)) {
    throw new CliError(`${origin} does not look like a Sigil server: its discovery document lacks issuer or token_endpoint`);
  }
  const issuer = metadata.issuer.replace(/\/+$/, '');
  return {
    origin,
    issuer,
    metadata,
    issuerUrl: (path) => `${issuer}${path}`,
    async fetch(path, init) {
      try {
        return await fetch(`${origin}${path}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), ...init });
      } catch (err) {
        if (isNetworkError(err)) throw unreachable(origin, err);
        throw err;
      }
    },
  };
}

/** The JSON body of an answer; a non-2xx answer becomes a ServerError carrying the server's error. */
export async function readJson<T>(res: Response): Promise<T> {
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    throw new CliError(`Sigil answered ${res.status} with a body that is not JSON`);
  }
  if (!res.ok) {
    const b = (body ?? {}) as { error?: unknown; error_description?: unknown };
    const error = typeof b.error === 'string' ? b.error : `http_${res.status}`;
    throw new ServerError(res.status, error, typeof b.error_description === 'string' ? b.error_description : undefined);
  }
  return body as T;
}
