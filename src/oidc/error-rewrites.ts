// oidc-provider answers a few refusals differently from the RFCs Sigil follows. They are corrected
// after it rendered them, recognised by their exact text: this table is the one place that knows
// that text (test/oidc/oidc-provider-contract.test.ts checks oidc-provider 9.13.3 still says it).

/** the oidc-provider routes whose answers are corrected */
export type CorrectedRoute = 'token' | 'introspection' | 'revocation';

export interface ErrorRewrite {
  /** why, in a line */
  rule: string;
  routes: ReadonlySet<CorrectedRoute>;
  /** what oidc-provider answers: always a 400 invalid_request with this description */
  description: string;
  status: number;
  error: string;
  /** undefined: oidc-provider's description is kept */
  newDescription: string | undefined;
}

const ALL = new Set<CorrectedRoute>(['token', 'introspection', 'revocation']);
const TOKEN = new Set<CorrectedRoute>(['token']);

export const ERROR_REWRITES: readonly ErrorRewrite[] = [
  {
    rule: 'RFC 6749 §5.2: no client authentication included is invalid_client (401)',
    routes: ALL,
    description: 'no client authentication mechanism provided',
    status: 401,
    error: 'invalid_client',
    newDescription: 'client authentication is required (private_key_jwt)',
  },
  {
    rule: 'RFC 7523 §3.2: an invalid client assertion, even one that is not a JWT, is invalid_client (401)',
    routes: TOKEN,
    description: 'invalid client_assertion format',
    status: 401,
    error: 'invalid_client',
    newDescription: 'client_assertion is not a signed JWT',
  },
  {
    rule: 'RFC 6749 §5.2: a grant type the client does not hold is unauthorized_client',
    routes: TOKEN,
    description: 'requested grant type is not allowed for this client',
    status: 400,
    error: 'unauthorized_client',
    newDescription: undefined,
  },
];

interface Answer {
  status: number;
  body: unknown;
}

/**
 * Corrects `answer` (a Koa ctx after oidc-provider) when it is one of the refusals above; returns
 * whether it did. Every other answer, a token above all, is passed over at the first comparison.
 */
export function rewriteRefusal(route: CorrectedRoute, answer: Answer): boolean {
  if (answer.status !== 400) return false;
  const body = answer.body as { error?: string; error_description?: string } | undefined;
  if (body?.error !== 'invalid_request') return false;
  for (const rewrite of ERROR_REWRITES) {
    if (body.error_description !== rewrite.description || !rewrite.routes.has(route)) continue;
    answer.status = rewrite.status;
    answer.body = rewrite.newDescription === undefined
      ? { ...body, error: rewrite.error }
      : { error: rewrite.error, error_description: rewrite.newDescription };
    return true;
  }
  return false;
}
