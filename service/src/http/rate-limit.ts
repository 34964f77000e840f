/**
 * Per-client token buckets, in memory. Each replica limits on its own, so behind a Service with N
 * ready replicas a client can get up to N times the configured rate; put a shared limit at the
 * ingress if that matters. Memory stays bounded: full buckets are forgotten and the table is capped.
 */
export interface RateDecision {
  allowed: boolean;
  /** Seconds until one more request would be allowed (0 when allowed). */
  retryAfterSeconds: number;
  remaining: number;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly refillPerMs: number;

  constructor(
    /** Requests allowed per window; 0 disables limiting. */
    readonly limit: number,
    readonly windowSeconds: number,
    private readonly maxClients = 100_000,
    private readonly now: () => number = Date.now,
  ) {
    this.refillPerMs = limit / (windowSeconds * 1000);
  }

  take(key: string): RateDecision {
    if (this.limit === 0) return { allowed: true, retryAfterSeconds: 0, remaining: Number.POSITIVE_INFINITY };
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (bucket) {
      bucket.tokens = Math.min(this.limit, bucket.tokens + (now - bucket.updatedMs) * this.refillPerMs);
      bucket.updatedMs = now;
      // Re-insert so Map order approximates least-recently-used for eviction.
      this.buckets.delete(key);
    } else {
      bucket = { tokens: this.limit, updatedMs: now };
      if (this.buckets.size >= this.maxClients) this.evict(now);
    }
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true, retryAfterSeconds: 0, remaining: Math.floor(bucket.tokens) };
    }
    const retryAfterSeconds = Math.max(1, Math.ceil((1 - bucket.tokens) / this.refillPerMs / 1000));
    return { allowed: false, retryAfterSeconds, remaining: 0 };
  }

  get size(): number {
    return this.buckets.size;
  }

  private evict(now: number): void {
    // Buckets that have refilled completely carry no information; drop them first.
    for (const [key, b] of this.buckets) {
      if (b.tokens + (now - b.updatedMs) * this.refillPerMs >= this.limit) this.buckets.delete(key);
    }
    // Still full: drop the least recently used tenth.
    if (this.buckets.size >= this.maxClients) {
      let toDrop = Math.ceil(this.maxClients / 10);
      for (const key of this.buckets.keys()) {
        if (toDrop-- <= 0) break;
        this.buckets.delete(key);
      }
    }
  }
}
