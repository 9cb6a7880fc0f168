// One kind of error leaves Sigil: an RFC 6749 §5.2 JSON body with the right status.
import type { Context } from 'koa';

export function sendError(ctx: Context, status: number, error: string, description?: string, headers: Record<string, string> = {}): void {
  ctx.status = status;
  ctx.set('Cache-Control', 'no-store');
  for (const [k, v] of Object.entries(headers)) ctx.set(k, v);
  ctx.type = 'application/json';
  ctx.body = description === undefined ? { error } : { error, error_description: description };
}
