// Bounds the argon2 work that presenting initial access tokens can make an instance do: token
// buckets per token id and per source address, in process (each instance bounds its own work; N
// instances allow N times the rate). Only argon2 checks are counted: a dead or unknown token id, a
// malformed token and a secret this instance already verified cost none (initial-access-tokens.ts).
import { isIPv6 } from 'node:net';
import { ipv6Bytes } from '../outbound/address-ranges.js';
import type { SecretCheckAdmission } from './initial-access-tokens.js';

export interface BucketRule {
  /** checks allowed at once */
  burst: number;
  /** seconds for one more check to become available */
  refillSeconds: number;
}

/** a partner retrying its registration a few times is never slowed; a forger gets ten guesses a minute */
export const PER_TOKEN: BucketRule = { burst: 10, refillSeconds: 6 };
/** every partner behind one address (or a load balancer: Koa's proxy trust is off) shares this */
export const PER_ADDRESS: BucketRule = { burst: 20, refillSeconds: 3 };
/** buckets kept per kind, least recently used out first (more addresses than that buy nothing more than fresh ones would) */
const MAX_BUCKETS = 10_000;

class TokenBuckets {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly rule: BucketRule, private readonly now: () => number) {}

  /** seconds until `key` may take a check; 0 when it may now */
  wait(key: string): number {
    const tokens = this.#tokens(key);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) * this.rule.refillSeconds);
  }

  take(key: string): void {
    const tokens = this.#tokens(key) - 1;
    // a Map iterates in insertion order: re-inserting makes the key the most recent, the first the oldest
    this.#buckets.delete(key);
    if (this.#buckets.size >= MAX_BUCKETS) this.#buckets.delete(this.#buckets.keys().next().value!);
    this.#buckets.set(key, { tokens, at: this.now() });
  }

  #tokens(key: string): number {
    const b = this.#buckets.get(key);
    if (!b) return this.rule.burst;
    return Math.min(this.rule.burst, b.tokens + (this.now() - b.at) / 1000 / this.rule.refillSeconds);
  }
}

/** The address a bucket is kept for: IPv4 as is (also v4-mapped), IPv6 by its /64 (one host's usual share). */
export function sourceKey(address: string | undefined): string {
  if (!address) return 'unknown';
  if (!isIPv6(address.replace(/%.*$/, ''))) return address;
  const bytes = ipv6Bytes(address);
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return bytes.subarray(12).join('.');
  return `${Buffer.from(bytes.subarray(0, 8)).toString('hex').replace(/(.{4})(?!$)/g, '$1:')}::/64`;
}

export class RegistrationThrottle {
  readonly #perToken: TokenBuckets;
  readonly #perAddress: TokenBuckets;

  constructor(opts: { now?: () => number; perToken?: BucketRule; perAddress?: BucketRule } = {}) {
    const now = opts.now ?? Date.now;
    this.#perToken = new TokenBuckets(opts.perToken ?? PER_TOKEN, now);
    this.#perAddress = new TokenBuckets(opts.perAddress ?? PER_ADDRESS, now);
  }

  /** May one argon2 check run for `tokenId`, asked from `address`? Takes from both buckets only when both allow. */
  admit(tokenId: string, address: string | undefined): SecretCheckAdmission {
    const source = sourceKey(address);
    const wait = Math.max(this.#perToken.wait(tokenId), this.#perAddress.wait(source));
    if (wait > 0) return { ok: false, retryAfterSeconds: wait };
    this.#perToken.take(tokenId);
    this.#perAddress.take(source);
    return { ok: true };
  }
}
