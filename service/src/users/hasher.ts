/**
 * argon2id hashing on libuv's thread pool behind a bounded gate.
 *
 * Each hash holds `memoryKib` of memory and a CPU core for tens of milliseconds, so running more
 * at once than there are cores only adds memory and latency. Requests beyond `concurrency` wait in
 * a queue of at most `queueLimit`; past that the caller gets `OverloadedError`, which the HTTP layer
 * turns into 503 + Retry-After instead of letting latency and memory grow without bound.
 */
import { hash, parseOptions, verify, type Algorithm, type Options } from '@node-rs/argon2';
import type { HashConfig } from '../config.js';

const ARGON2ID = 2 as Algorithm; // const enum in the typings; 2 is Argon2id

export class OverloadedError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super('password hashing capacity exhausted');
    this.name = 'OverloadedError';
  }
}

export interface HasherStats {
  inFlight: number;
  queued: number;
  rejected: number;
}

export class PasswordHasher {
  readonly options: Options;
  private inFlight = 0;
  private rejected = 0;
  private readonly waiters: Array<() => void> = [];
  /** Rolling estimate of one hash's duration, used to tell shed clients when to come back. */
  private averageMs = 50;
  private dummyHash: Promise<string> | undefined;

  constructor(private readonly config: HashConfig) {
    this.options = {
      algorithm: ARGON2ID,
      memoryCost: config.memoryKib,
      timeCost: config.iterations,
      parallelism: config.parallelism,
    };
  }

  stats(): HasherStats {
    return { inFlight: this.inFlight, queued: this.waiters.length, rejected: this.rejected };
  }

  async hash(password: string): Promise<string> {
    return this.withSlot(() => hash(password, this.options));
  }

  async verify(encoded: string, password: string): Promise<boolean> {
    return this.withSlot(async () => {
      try {
        return await verify(encoded, password);
      } catch {
        return false; // a malformed stored hash never authenticates anyone
      }
    });
  }

  /**
   * Burns the same work as a real verification, for logins of unknown users: the response then
   * takes as long as a wrong password does, so timing does not reveal which usernames exist.
   */
  async verifyDummy(password: string): Promise<void> {
    this.dummyHash ??= hash('kreg-dummy-password-for-timing', this.options);
    await this.verify(await this.dummyHash, password);
  }

  /** True when `encoded` was made with weaker parameters (or another algorithm) than today's. */
  needsRehash(encoded: string): boolean {
    try {
      const p = parseOptions(encoded);
      return (
        p.algorithm !== ARGON2ID ||
        p.memoryCost < this.config.memoryKib ||
        p.timeCost < this.config.iterations ||
        p.parallelism !== this.config.parallelism
      );
    } catch {
      return true;
    }
  }

  private async withSlot<T>(work: () => Promise<T>): Promise<T> {
    if (this.inFlight >= this.config.concurrency) {
      if (this.waiters.length >= this.config.queueLimit) {
        this.rejected++;
        const waitMs = ((this.waiters.length + this.inFlight) / this.config.concurrency) * this.averageMs;
        throw new OverloadedError(Math.max(1, Math.ceil(waitMs / 1000)));
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    } else {
      this.inFlight++;
    }
    // The slot is ours here: either taken above or handed over by `release` without decrementing.
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.averageMs = this.averageMs * 0.9 + (performance.now() - started) * 0.1;
      this.release();
    }
  }

  private release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.inFlight--;
  }
}
