/**
 * A libsql server for tests: the Hrana-over-HTTP protocol (version 2, JSON) that `@libsql/client`
 * speaks to sqld and Turso, in front of a real libsql database file — with faults on demand.
 *
 * sqld cannot be installed on these machines (no release downloads), so remote mode is tested
 * against this: the client, its HTTP transport and the database engine are the real ones; only the
 * few hundred bytes of protocol framing are ours. Faults act on the real socket: a request that is
 * never answered, one answered late, a refused token, a dropped connection.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import Database from 'libsql';

type HranaValue =
  | { type: 'null' }
  | { type: 'integer'; value: string }
  | { type: 'float'; value: number }
  | { type: 'text'; value: string }
  | { type: 'blob'; base64: string };

interface HranaStmt {
  sql?: string;
  sql_id?: number;
  args?: HranaValue[];
  named_args?: Array<{ name: string; value: HranaValue }>;
  want_rows?: boolean;
}

type HranaCond =
  | { type: 'ok' | 'error'; step: number }
  | { type: 'not'; cond: HranaCond }
  | { type: 'and' | 'or'; conds: HranaCond[] }
  | { type: 'is_autocommit' };

type HranaRequest =
  | { type: 'close' }
  | { type: 'execute'; stmt: HranaStmt }
  | { type: 'batch'; batch: { steps: Array<{ condition?: HranaCond | null; stmt: HranaStmt }> } }
  | { type: 'sequence'; sql?: string; sql_id?: number }
  | { type: 'store_sql'; sql_id: number; sql: string }
  | { type: 'close_sql'; sql_id: number }
  | { type: 'get_autocommit' };

/** What the server does with the next pipeline requests. */
export type Fault =
  | { kind: 'none' }
  /** Accept the request and never answer (until the fault is cleared or the server closes). */
  | { kind: 'hang' }
  /** Answer correctly, but only after `ms`. */
  | { kind: 'delay'; ms: number }
  /**
   * Answer with this HTTP status and an error body, executing nothing: sqld's `{"error": …}`, or
   * `{"message": …}` as proxies and hosted servers answer.
   */
  | { kind: 'status'; status: number; message: string; bodyKey?: 'error' | 'message' }
  /** Destroy the connection as soon as the request arrives. */
  | { kind: 'drop' }
  /** Serve reads; refuse every write with SQLITE_READONLY (as a read-only token does). */
  | { kind: 'readonly' };

interface Stream {
  db: Database.Database;
  sqls: Map<number, string>;
}

export interface HranaServer {
  url: string;
  /** Requests with a pipeline body received so far (answered or not). */
  readonly requests: number;
  setFault(fault: Fault): void;
  /** Runs SQL directly on the database file (to look at what the service stored). */
  query(sql: string, ...args: unknown[]): unknown[];
  close(): Promise<void>;
}

export async function startHranaServer(opts: { path: string; token?: string }): Promise<HranaServer> {
  let fault: Fault = { kind: 'none' };
  let requests = 0;
  let closing = false;
  const streams = new Map<string, Stream>();
  const sockets = new Set<Socket>();
  const held = new Set<ServerResponse>();
  const inspector = new Database(opts.path);
  inspector.exec('PRAGMA journal_mode = WAL');

  const openStream = (): Stream => {
    const db = new Database(opts.path);
    db.defaultSafeIntegers(true);
    db.exec('PRAGMA busy_timeout = 5000');
    if (fault.kind === 'readonly') db.exec('PRAGMA query_only = ON');
    return { db, sqls: new Map() };
  };

  const server: Server = createServer(async (req, res) => {
    if (req.method === 'GET') {
      // Version probes (`/v2`, `/v3`, …): only v2 JSON is spoken here.
      res.writeHead(req.url === '/v2' ? 200 : 404).end();
      return;
    }
    if (req.method !== 'POST' || req.url !== '/v2/pipeline') {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found' }));
      return;
    }
    requests++;
    const body = await readBody(req);
    const active = fault;
    if (active.kind === 'drop') {
      req.socket.destroy();
      return;
    }
    if (active.kind === 'hang') {
      held.add(res);
      res.on('close', () => held.delete(res));
      return;
    }
    if (active.kind === 'status') {
      res.writeHead(active.status, { 'content-type': 'application/json' }).end(JSON.stringify({ [active.bodyKey ?? 'error']: active.message }));
      return;
    }
    if (opts.token !== undefined && req.headers.authorization !== `Bearer ${opts.token}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'Unauthorized: invalid token' }));
      return;
    }
    if (active.kind === 'delay') await new Promise((r) => setTimeout(r, active.ms));
    if (closing) return;
    const answer = pipeline(streams, openStream, JSON.parse(body) as { baton?: string | null; requests: HranaRequest[] });
    if (!res.destroyed) res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    setFault(next) {
      fault = next;
      if (next.kind !== 'hang') {
        // Requests held by an earlier hang stay unanswered, like a server that lost them.
        for (const res of held) res.destroy();
        held.clear();
      }
    },
    query(sql, ...args) {
      const stmt = inspector.prepare(sql);
      return stmt.reader ? stmt.all(...args) : [stmt.run(...args)];
    },
    async close() {
      closing = true;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      for (const stream of streams.values()) stream.db.close();
      inspector.close();
    },
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

function pipeline(
  streams: Map<string, Stream>,
  openStream: () => Stream,
  body: { baton?: string | null; requests: HranaRequest[] },
) {
  let stream = body.baton ? streams.get(body.baton) : undefined;
  if (body.baton) streams.delete(body.baton);
  stream ??= openStream();
  let closed = false;
  const results = body.requests.map((request) => {
    try {
      return { type: 'ok', response: handle(stream!, request, () => (closed = true)) };
    } catch (err) {
      return { type: 'error', error: hranaError(err) };
    }
  });
  let baton: string | null = null;
  if (closed) stream.db.close();
  else {
    baton = randomUUID();
    streams.set(baton, stream);
  }
  return { baton, base_url: null, results };
}

function handle(stream: Stream, request: HranaRequest, close: () => void): unknown {
  switch (request.type) {
    case 'close':
      close();
      return { type: 'close' };
    case 'execute':
      return { type: 'execute', result: execute(stream, request.stmt) };
    case 'batch': {
      const stepResults: unknown[] = [];
      const stepErrors: unknown[] = [];
      const ok: boolean[] = [];
      for (const step of request.batch.steps) {
        if (step.condition && !holds(step.condition, ok, stream)) {
          stepResults.push(null);
          stepErrors.push(null);
          ok.push(false);
          continue;
        }
        try {
          stepResults.push(execute(stream, step.stmt));
          stepErrors.push(null);
          ok.push(true);
        } catch (err) {
          stepResults.push(null);
          stepErrors.push(hranaError(err));
          ok.push(false);
        }
      }
      return { type: 'batch', result: { step_results: stepResults, step_errors: stepErrors } };
    }
    case 'sequence':
      stream.db.exec(sqlOf(stream, request));
      return { type: 'sequence' };
    case 'store_sql':
      stream.sqls.set(request.sql_id, request.sql);
      return { type: 'store_sql' };
    case 'close_sql':
      stream.sqls.delete(request.sql_id);
      return { type: 'close_sql' };
    case 'get_autocommit':
      return { type: 'get_autocommit', is_autocommit: !stream.db.inTransaction };
  }
}

function holds(cond: HranaCond, ok: boolean[], stream: Stream): boolean {
  switch (cond.type) {
    case 'ok':
      return ok[cond.step] === true;
    case 'error':
      return ok[cond.step] === false;
    case 'not':
      return !holds(cond.cond, ok, stream);
    case 'and':
      return cond.conds.every((c) => holds(c, ok, stream));
    case 'or':
      return cond.conds.some((c) => holds(c, ok, stream));
    case 'is_autocommit':
      return !stream.db.inTransaction;
  }
}

function sqlOf(stream: Stream, source: { sql?: string; sql_id?: number }): string {
  const sql = source.sql ?? (source.sql_id !== undefined ? stream.sqls.get(source.sql_id) : undefined);
  if (sql === undefined) throw Object.assign(new Error('SQL text not found'), { code: 'SQL_NOT_FOUND' });
  return sql;
}

function execute(stream: Stream, stmt: HranaStmt) {
  if (stmt.named_args && stmt.named_args.length > 0) throw new Error('named arguments are not supported by this test server');
  const prepared = stream.db.prepare(sqlOf(stream, stmt));
  const args = (stmt.args ?? []).map(fromValue);
  if (prepared.reader) {
    prepared.raw(true);
    const rows = prepared.all(...args) as unknown[][];
    const cols = (prepared.columns() as Array<{ name: string; type: string | null }>).map((c) => ({
      name: c.name,
      decltype: c.type ?? null,
    }));
    return { cols, rows: rows.map((row) => row.map(toValue)), affected_row_count: 0, last_insert_rowid: null };
  }
  const info = prepared.run(...args) as { changes: number; lastInsertRowid: number | bigint };
  return { cols: [], rows: [], affected_row_count: Number(info.changes), last_insert_rowid: String(info.lastInsertRowid) };
}

function fromValue(v: HranaValue): unknown {
  switch (v.type) {
    case 'null':
      return null;
    case 'integer':
      return BigInt(v.value);
    case 'float':
      return v.value;
    case 'text':
      return v.value;
    case 'blob':
      return Buffer.from(v.base64, 'base64');
  }
}

function toValue(v: unknown): HranaValue {
  if (v === null || v === undefined) return { type: 'null' };
  if (typeof v === 'bigint') return { type: 'integer', value: v.toString() };
  if (typeof v === 'number') return { type: 'float', value: v };
  if (typeof v === 'string') return { type: 'text', value: v };
  if (Buffer.isBuffer(v)) return { type: 'blob', base64: v.toString('base64') };
  throw new Error(`unsupported value ${typeof v}`);
}

function hranaError(err: unknown): { message: string; code?: string } {
  const e = err as { message?: string; code?: string };
  return { message: e.message ?? String(err), ...(e.code ? { code: e.code } : {}) };
}
