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

/**
 * The database answered, and said no: the credentials were refused (401/403) or the token may only
 * read. Retrying does not help; an operator has to fix the token. Never a 500.
 */
export class DatabaseRefusedError extends Error {
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`database refused the request: ${reason}`, options);
    this.name = 'DatabaseRefusedError';
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
  // A name that does not resolve yet (a Service about to be created) may resolve in a moment.
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'SQLITE_BUSY',
  // @libsql/client over ws://: the connection failed or dropped (close code 1006 when sqld dies),
  // and the stream it carried was closed with it. The next request opens a new connection.
  'HRANA_WEBSOCKET_ERROR',
  'HRANA_CLOSED_ERROR',
  // postgres.js: the connection closed, failed to open in time, or no pooled connection freed up
  // in time; a statement past its deadline (cancelled), or cancelled without an answer.
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
  'CONNECT_TIMEOUT',
  'QUEUE_TIMEOUT',
  'QUERY_TIMEOUT',
  'CANCEL_UNANSWERED',
  // PostgreSQL SQLSTATEs: the server is shutting down or restarting (57P01-57P03), has no
  // connection slot left (53300), cancelled a statement past statement_timeout (57014), or gave up
  // a lock (55P03 lock_not_available, 40P01 deadlock, 40001 serialization).
  '57P01',
  '57P02',
  '57P03',
  '53300',
  '57014',
  '55P03',
  '40P01',
  '40001',
]);

/** PostgreSQL SQLSTATEs that refuse the request for good, and what an operator should check. */
const PG_REFUSALS: Record<string, string> = {
  '28P01': 'the server refused the credentials (28P01 invalid_password): check the user and password in DATABASE_URL',
  '28000': 'the server refused the login (28000 invalid_authorization_specification): check the user in DATABASE_URL and pg_hba.conf',
  '3D000': 'the database does not exist (3D000 invalid_catalog_name): check the database name in DATABASE_URL',
  '42501': 'the role lacks a privilege (42501 insufficient_privilege): grant it on the users table',
  '25006': 'the database is read-only for this role or server (25006 read_only_sql_transaction): point DATABASE_URL at the primary',
};

/** `err` and its causes, outermost first (drizzle wraps the driver's error, which wraps the transport's). */
export function* causeChain(err: unknown, max = 6): Generator<Record<string, unknown>> {
  let e: unknown = err;
  for (let depth = 0; e && typeof e === 'object' && depth < max; depth++) {
    yield e as Record<string, unknown>;
    e = (e as { cause?: unknown }).cause;
  }
}

/** Codes with which SQLite (or a server relaying it) refuses a write for good. */
const REFUSAL_CODES = new Set(['SQLITE_READONLY', 'SQLITE_AUTH', 'SQLITE_PERM']);

/** Why the database refused `err`'s request for good (credentials, permissions), or undefined. */
function refusalReason(err: unknown): string | undefined {
  for (const e of causeChain(err)) {
    const { code, extendedCode, status } = e;
    if (typeof code === 'string' && code in PG_REFUSALS) return PG_REFUSALS[code];
    if (status === 401) return 'the server refused the credentials (HTTP 401): check DATABASE_AUTH_TOKEN';
    if (status === 403) return 'the token is not allowed to do this (HTTP 403): check DATABASE_AUTH_TOKEN';
    for (const c of [code, extendedCode]) {
      if (typeof c === 'string' && [...REFUSAL_CODES].some((r) => c.startsWith(r))) {
        return c.startsWith('SQLITE_READONLY') ? 'the database is read-only for this token (SQLITE_READONLY)' : `the database refused it (${c})`;
      }
    }
  }
  return undefined;
}

/** The reason to report when `err` means the database is unreachable or too slow; else undefined. */
function transientReason(err: unknown): string | undefined {
  for (const e of causeChain(err)) {
    if (e instanceof DeadlineExceededError) return e.message;
    const { code, name, message, status } = e;
    if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return typeof message === 'string' && message ? `${code}: ${message}` : code;
    // SQLSTATE class 08: connection exceptions.
    if (typeof code === 'string' && /^08[0-9A-Z]{3}$/.test(code)) return typeof message === 'string' && message ? `${code}: ${message}` : code;
    // A server that is up but failing (5xx, 429): the same request may succeed in a moment.
    if (typeof status === 'number' && (status >= 500 || status === 429)) return `the server answered HTTP ${status}`;
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
  /** Called once when the database starts refusing requests (credentials, read-only), and once when it stops. */
  onRefusalChange?(refusal: { reason: string; cause: unknown } | undefined): void;
}

export class DatabaseGuard {
  #writeFailure: WriteFailure | undefined;
  #refused: string | undefined;

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
      if (!(err instanceof DatabaseUnavailableError || err instanceof DatabaseRefusedError)) {
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
      const result = await Promise.race([work, deadline]);
      if (this.#refused !== undefined) {
        this.#refused = undefined;
        this.events.onRefusalChange?.(undefined);
      }
      return result;
    } catch (err) {
      const refusal = refusalReason(err);
      if (refusal !== undefined) {
        if (this.#refused !== refusal) {
          this.#refused = refusal;
          this.events.onRefusalChange?.({ reason: refusal, cause: err });
        }
        throw new DatabaseRefusedError(refusal, { cause: err });
      }
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
