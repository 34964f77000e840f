/**
 * Every database call goes through a `DatabaseGuard`: it gets a deadline, and a failure that means
 * "the database cannot serve right now" becomes a `DatabaseUnavailableError` (503 + Retry-After)
 * instead of an unhandled error. Writes are also tracked, so readiness can say when the write path
 * is failing even though reads (and a `SELECT 1`) still answer — a wedged libsql server does that.
 */

/** The database did not answer in time or could not be reached; the caller may retry. */
export class DatabaseUnavailableError extends Error {
  constructor(
    readonly reason: string,
    readonly retryAfterSeconds: number,
    options?: { cause?: unknown },
  ) {
    super(`database unavailable: ${reason}`, options);
    this.name = 'DatabaseUnavailableError';
  }
}

class DeadlineExceededError extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not complete within ${ms} ms`);
    this.name = 'DeadlineExceededError';
  }
}

/** Socket-level and lock-level codes that say "not now", wherever in the cause chain they sit. */
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'SQLITE_BUSY',
]);

/** The reason to report when `err` means the database is unreachable or too slow; else undefined. */
function transientReason(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof DeadlineExceededError) return e.message;
    const { code, name, message } = e as { code?: unknown; name?: unknown; message?: unknown };
    if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return typeof message === 'string' && message ? `${code}: ${message}` : code;
    // fetch aborted by the per-request signal (see `abortableFetch` in client.ts)
    if (name === 'TimeoutError' || name === 'AbortError') return 'request to the database timed out';
  }
  return undefined;
}

export interface WriteFailure {
  reason: string;
  since: Date;
}

export interface GuardEvents {
  /** Called when writes start failing (with the reason) and when they work again (undefined). */
  onWritePathChange?(failure: WriteFailure | undefined): void;
}

export class DatabaseGuard {
  #writeFailure: WriteFailure | undefined;

  constructor(
    readonly timeoutMs: number,
    private readonly events: GuardEvents = {},
  ) {}

  /** Set while the last write failed for lack of an answer; cleared by the next successful write. */
  get writeFailure(): WriteFailure | undefined {
    return this.#writeFailure;
  }

  read<T>(what: string, op: () => PromiseLike<T>): Promise<T> {
    return this.run(what, op);
  }

  async write<T>(what: string, op: () => PromiseLike<T>): Promise<T> {
    try {
      const result = await this.run(what, op);
      this.writeAnswered();
      return result;
    } catch (err) {
      if (!(err instanceof DatabaseUnavailableError)) {
        // A refusal such as a unique violation is still an answer: the write path works.
        this.writeAnswered();
      } else if (!this.#writeFailure) {
        this.#writeFailure = { reason: err.reason, since: new Date() };
        this.events.onWritePathChange?.(this.#writeFailure);
      }
      throw err;
    }
  }

  private writeAnswered(): void {
    if (!this.#writeFailure) return;
    this.#writeFailure = undefined;
    this.events.onWritePathChange?.(undefined);
  }

  private async run<T>(what: string, op: () => PromiseLike<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineExceededError(what, this.timeoutMs)), this.timeoutMs);
    });
    // Adopting the result (rather than calling .then/.catch on it twice) matters: a drizzle query
    // builder is a thenable that runs its statement again on every .then.
    const work = Promise.resolve().then(op);
    // The losing call may still settle later; its outcome is of no interest to anyone.
    work.catch(() => {});
    try {
      return await Promise.race([work, deadline]);
    } catch (err) {
      const reason = transientReason(err);
      if (reason !== undefined) {
        throw new DatabaseUnavailableError(reason, Math.max(1, Math.ceil(this.timeoutMs / 1000)), { cause: err });
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}
