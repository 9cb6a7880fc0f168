// One HTTP exchange with fetch, answered in a shape every test reads the same way: the status, the
// headers, the text and, when the text is JSON, the parsed document.
import assert from 'node:assert/strict';

/** A generous bound on one request: an answer that takes longer is a hang, and fails the test. */
export const REQUEST_TIMEOUT_MS = 15_000;

export interface Answer {
  status: number;
  headers: Headers;
  /** the content-type header, '' when absent */
  contentType: string;
  text: string;
  /** the body parsed as JSON, undefined when it is not JSON */
  body: any;
  /** the same document, under the name raw-http's RawResponse gives it, so one assertion reads both */
  json: any;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** fetch with a hard deadline: a deadline that fires is a test failure (a hang), not an error to retry. */
export async function send(url: string, init: RequestInit = {}, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Answer> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    if ((err as Error).name === 'TimeoutError') assert.fail(`${init.method ?? 'GET'} ${url} got no answer within ${timeoutMs} ms (a hang)`);
    throw err;
  }
  const text = await res.text();
  const json = parseJson(text);
  return { status: res.status, headers: res.headers, contentType: res.headers.get('content-type') ?? '', text, body: json, json };
}

/** POST application/x-www-form-urlencoded; undefined fields are left out. */
export function postForm(url: string, fields: Record<string, string | undefined>, headers: Record<string, string> = {}): Promise<Answer> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) body.append(k, v);
  return send(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
}
