// The one way a JSON request body is read (registration, admin API): refused before JSON.parse when
// nested deeper than any legitimate body or holding what Postgres cannot store (U+0000, lone surrogates).
import type { Context } from 'koa';
import { jsonTextProblem } from '../input/input-limits.js';

export type JsonBody = { ok: true; value: unknown } | { ok: false; problem: string };

/** The request's body (read by bodyGuard, at most BODY_LIMIT_BYTES), parsed; callers check its type. */
export function parseJsonBody(ctx: Context): JsonBody {
  const text = (ctx.state.rawBody as string | undefined) ?? '';
  const problem = jsonTextProblem(text);
  if (problem) return { ok: false, problem: `the request body ${problem}` };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, problem: 'the request body is not valid JSON' };
  }
}
