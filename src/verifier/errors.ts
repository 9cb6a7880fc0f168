// The verifier's refusals: one typed error whose `status`, `code` and `wwwAuthenticate` are exactly
// what the API answers with (RFC 6750 §3, RFC 9449 §7.1), so an adapter only copies them out.

export type VerifierErrorCode =
  /** no Authorization header at all: the challenge carries no error (RFC 6750 §3.1) */
  | 'missing_token'
  | 'invalid_token'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | 'insufficient_scope'
  /** the verifier cannot decide now (status list or replay records unavailable): fail closed, retry later */
  | 'temporarily_unavailable';

export interface Challenge {
  /** the DPoP algorithms the challenge advertises (`algs`) */
  algs: readonly string[];
  /** also offer a Bearer challenge (only when plain Bearer tokens are accepted) */
  bearer: boolean;
  realm?: string;
}

/** RFC 7230 quoted-string content: the descriptions are ours, but a stray quote must never break the header */
const quoted = (s: string) => `"${s.replace(/[\\"]/g, '').replace(/[^\x20-\x7e]/g, '?')}"`;

export class VerifierError extends Error {
  override readonly name = 'VerifierError';
  /** when the code is use_dpop_nonce: the value to send in a `DPoP-Nonce` header */
  readonly dpopNonce: string | undefined;
  /** when the code is temporarily_unavailable: seconds for a `Retry-After` header */
  readonly retryAfter: number | undefined;

  constructor(
    readonly status: 401 | 403 | 503,
    readonly code: VerifierErrorCode,
    readonly description: string,
    readonly wwwAuthenticate: string,
    extra: { dpopNonce?: string; retryAfter?: number } = {},
  ) {
    super(`${code}: ${description}`);
    this.dpopNonce = extra.dpopNonce;
    this.retryAfter = extra.retryAfter;
  }

  /** the headers to answer with, beside `status` */
  get headers(): Record<string, string> {
    const h: Record<string, string> = { 'WWW-Authenticate': this.wwwAuthenticate };
    if (this.dpopNonce) h['DPoP-Nonce'] = this.dpopNonce;
    if (this.retryAfter !== undefined) h['Retry-After'] = String(this.retryAfter);
    return h;
  }
}

/** The WWW-Authenticate value: a DPoP challenge with `algs`, and a Bearer one when Bearer is allowed. */
export function challengeHeader(c: Challenge, params: { error?: string; description?: string; scope?: string } = {}): string {
  const common = [
    ...(c.realm ? [`realm=${quoted(c.realm)}`] : []),
    ...(params.error ? [`error=${quoted(params.error)}`] : []),
    ...(params.description ? [`error_description=${quoted(params.description)}`] : []),
    ...(params.scope ? [`scope=${quoted(params.scope)}`] : []),
  ];
  const dpop = `DPoP ${[...common, `algs=${quoted(c.algs.join(' '))}`].join(', ')}`;
  // a DPoP-only error (a proof problem, a nonce) concerns the DPoP scheme alone
  const dpopOnly = params.error === 'invalid_dpop_proof' || params.error === 'use_dpop_nonce';
  if (!c.bearer || dpopOnly) return dpop;
  return common.length ? `${dpop}, Bearer ${common.join(', ')}` : `${dpop}, Bearer`;
}

export function refusal(c: Challenge, code: VerifierErrorCode, description: string, extra: { dpopNonce?: string; scope?: string; retryAfter?: number } = {}): VerifierError {
  const status = code === 'insufficient_scope' ? 403 : code === 'temporarily_unavailable' ? 503 : 401;
  const error = code === 'missing_token' || code === 'temporarily_unavailable' ? undefined : code;
  const header = challengeHeader(c, { error, description: error ? description : undefined, scope: extra.scope });
  return new VerifierError(status, code, description, header, extra);
}
