/**
 * A work queue of keys (`namespace/name`), as client-go's: a key is queued at most once however
 * often it is added; a key being processed is never handed out twice at once — if it is added
 * meanwhile, it is queued again when `done`; failures back off per key, exponentially with jitter;
 * `addAfter` schedules a look (the earliest of several wins).
 */

export interface QueueOptions {
  /** First retry delay after a failure; doubles per consecutive failure. Default 250 ms. */
  baseDelayMs?: number;
  /** Longest retry delay. Default 5 minutes. */
  maxDelayMs?: number;
  /** Randomness of retry delays, ± this fraction. Default 0.2. */
  jitter?: number;
}

export interface QueueStats {
  depth: number;
  adds: number;
  retries: number;
  /** Seconds keys waited between being queued and handed out, since the last read. */
  waits: number[];
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly queuedAt = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private waiters: Array<(key: string | undefined) => void> = [];
  private shuttingDown = false;
  private adds = 0;
  private retries = 0;
  private waits: number[] = [];
  private readonly base: number;
  private readonly max: number;
  private readonly jitter: number;

  constructor(options: QueueOptions = {}) {
    this.base = options.baseDelayMs ?? 250;
    this.max = options.maxDelayMs ?? 300_000;
    this.jitter = options.jitter ?? 0.2;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.adds++;
    this.dirty.add(key);
    this.queuedAt.set(key, performance.now());
    if (this.processing.has(key)) return; // queued again by done()
    this.push(key);
  }

  /** Look at `key` in `ms` (or sooner, if something else adds it or asks for an earlier look). */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) return this.add(key);
    const at = Date.now() + ms;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Retry `key` after its backoff (which grows with each call until `forget`). */
  addRateLimited(key: string): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    this.retries++;
    const delay = this.backoff(n);
    this.addAfter(key, delay);
    return delay;
  }

  /** The delay for the n-th consecutive failure (1-based). */
  backoff(n: number): number {
    const raw = Math.min(this.max, this.base * 2 ** Math.min(n - 1, 30));
    const spread = raw * this.jitter;
    return Math.max(1, Math.round(raw - spread + Math.random() * 2 * spread));
  }

  /** The key succeeded: its backoff starts over. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  failuresOf(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** The next key to process; waits for one. Undefined once the queue is shut down. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) return Promise.resolve(this.handOut(key));
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Processing of `key` is over; if it was added meanwhile, it is queued again. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) this.push(key);
  }

  shutdown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const w of this.waiters) w(undefined);
    this.waiters = [];
  }

  get depth(): number {
    return this.queue.length;
  }

  /** Counters, and the waits recorded since the last call. */
  stats(): QueueStats {
    const waits = this.waits;
    this.waits = [];
    return { depth: this.queue.length, adds: this.adds, retries: this.retries, waits };
  }

  private push(key: string): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(this.handOut(key));
    else this.queue.push(key);
  }

  private handOut(key: string): string {
    this.dirty.delete(key);
    this.processing.add(key);
    const since = this.queuedAt.get(key);
    if (since !== undefined) this.waits.push((performance.now() - since) / 1000);
    this.queuedAt.delete(key);
    return key;
  }
}
