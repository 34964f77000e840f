/**
 * A watch that does not stop silently: list, then watch from the list's resourceVersion, for as long
 * as it runs. What it does about each way a watch ends (notes/operator.md §3.4):
 *
 * - the server ends the request (its randomized `timeoutSeconds`): watch again from the last
 *   resourceVersion seen — bookmarks (`allowWatchBookmarks`) keep it fresh, so this needs no list;
 * - 410 Gone, as the HTTP status of the watch or as an ERROR event in the stream: list again and
 *   report what changed meanwhile as events (a relist);
 * - nothing at all arrives for `inactivityMs` (a half-open connection, a proxy that swallowed it):
 *   abort and watch again;
 * - any other failure (connection refused or reset, 5xx, 429): back off with jitter, then watch again
 *   (429 honours Retry-After when the server sends one); it never gives up.
 *
 * The store is a map of the objects as last seen; handlers see every add, update and delete.
 */
import { KubeApiError, KubeConnectionError, type KubeClient } from '../engine/client.js';
import type { KubeObject } from '../engine/types.js';
import { sleep } from '../engine/util.js';

export type InformerEvent = 'added' | 'modified' | 'deleted';

export interface InformerOptions {
  apiVersion: string;
  kind: string;
  namespace?: string;
  labelSelector?: string;
  /** e.g. `metadata.name=x`: one object, for watching a single object of someone else's. */
  fieldSelector?: string;
  /** Watch metadata only (PartialObjectMetadata): enough to know that owned objects changed. */
  metadataOnly?: boolean;
  onEvent(type: InformerEvent, object: KubeObject, previous?: KubeObject): void;
  /** Server-side watch timeout, randomized in this range (seconds). Default 300–600. */
  timeoutSeconds?: [number, number];
  /** Restart a watch that delivered nothing (not even a bookmark) for this long. Default 150 s. */
  inactivityMs?: number;
  /**
   * Reconnect backoff. Default 200 ms doubling to 30 s, ± 20 %. A successful list, or a watch that
   * had been running for `healthyMs` (default 10 s) before it broke, starts the backoff over: each
   * outage is met with the short delays first, not with the long ones the last outage ended on.
   */
  backoff?: { baseMs: number; maxMs: number; healthyMs?: number };
  /** One line per notable event (reconnects, relists). */
  log?: (line: string) => void;
}

export interface InformerHealth {
  synced: boolean;
  /** Wall-clock ms of the last event or bookmark received. */
  lastEventAt: number;
  relists: Record<string, number>;
  reconnects: Record<string, number>;
}

export function objectKey(obj: Pick<KubeObject, 'metadata'>): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

export class Informer {
  readonly store = new Map<string, KubeObject>();
  private readonly abort = new AbortController();
  private resourceVersion = '';
  private needList = true;
  private running: Promise<void> | undefined;
  private syncedResolve!: () => void;
  readonly synced: Promise<void> = new Promise((resolve) => (this.syncedResolve = resolve));
  private readonly healthState: InformerHealth = { synced: false, lastEventAt: 0, relists: {}, reconnects: {} };

  /** One namespace, or (no namespace given) all of them. */
  private readonly scope: { namespace: string } | { allNamespaces: true };

  constructor(
    private readonly client: KubeClient,
    private readonly options: InformerOptions,
  ) {
    this.scope = options.namespace ? { namespace: options.namespace } : { allNamespaces: true };
  }

  start(): this {
    this.running ??= this.loop();
    return this;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running?.catch(() => {});
  }

  health(): InformerHealth {
    return structuredClone(this.healthState);
  }

  private count(map: Record<string, number>, cause: string): void {
    map[cause] = (map[cause] ?? 0) + 1;
  }

  private async loop(): Promise<void> {
    const { backoff = { baseMs: 200, maxMs: 30_000 } } = this.options;
    const healthyMs = backoff.healthyMs ?? 10_000;
    let failures = 0;
    while (!this.abort.signal.aborted) {
      let watchStartedAt: number | undefined;
      try {
        if (this.needList) {
          await this.relist();
          // The server answered a full list: it is up and lets us read, so what failed before is over.
          failures = 0;
        }
        watchStartedAt = Date.now();
        await this.watchOnce();
        failures = 0; // the server ended the request: normal, watch again at once
      } catch (err) {
        if (this.abort.signal.aborted) return;
        const cause = causeOf(err);
        if (cause === 'gone') {
          this.needList = true;
          this.count(this.healthState.relists, 'expired');
          this.options.log?.(`${this.options.kind}: resourceVersion expired (410); listing again`);
          continue;
        }
        this.count(this.healthState.reconnects, cause);
        if (cause === 'inactive') {
          this.options.log?.(`${this.options.kind}: no event for ${this.options.inactivityMs ?? 150_000} ms; watching again`);
          continue;
        }
        // Without this, a watch that broke at the end of one outage kept its count, and the next
        // outage, minutes later, began at the longest delay: 20-30 s blind after a 3 s restart.
        if (watchStartedAt !== undefined && Date.now() - watchStartedAt >= healthyMs) failures = 0;
        failures++;
        const retryAfter = err instanceof KubeApiError && err.status === 429 ? retryAfterMs(err) : undefined;
        const raw = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(failures - 1, 20));
        const delay = retryAfter ?? Math.round(raw * (0.8 + Math.random() * 0.4));
        this.options.log?.(`${this.options.kind}: watch failed (${cause}: ${err instanceof Error ? err.message : String(err)}); retrying in ${delay} ms`);
        try {
          await sleep(delay, this.abort.signal);
        } catch {
          return;
        }
      }
    }
  }

  /** Lists and reconciles the store with what it finds, reporting the differences as events. */
  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.client.listWithVersion(this.options.apiVersion, this.options.kind, {
      ...this.scope,
      ...(this.options.labelSelector ? { labelSelector: this.options.labelSelector } : {}),
      ...(this.options.fieldSelector ? { fieldSelector: this.options.fieldSelector } : {}),
    });
    const seen = new Set<string>();
    for (const item of items) {
      const key = objectKey(item);
      seen.add(key);
      const before = this.store.get(key);
      this.store.set(key, item);
      if (!before) this.options.onEvent('added', item);
      else if (before.metadata.resourceVersion !== item.metadata.resourceVersion) this.options.onEvent('modified', item, before);
    }
    for (const [key, obj] of this.store) {
      if (seen.has(key)) continue;
      this.store.delete(key);
      this.options.onEvent('deleted', obj);
    }
    this.resourceVersion = resourceVersion;
    this.needList = false;
    this.healthState.lastEventAt = Date.now();
    if (!this.healthState.synced) {
      this.healthState.synced = true;
      this.syncedResolve();
    }
  }

  private async watchOnce(): Promise<void> {
    const [min, max] = this.options.timeoutSeconds ?? [300, 600];
    const timeoutSeconds = Math.round(min + Math.random() * (max - min));
    const inactivityMs = this.options.inactivityMs ?? 150_000;
    const watchAbort = new AbortController();
    const onStop = () => watchAbort.abort();
    this.abort.signal.addEventListener('abort', onStop, { once: true });
    let inactive = false;
    let watchdog = setTimeout(() => {
      inactive = true;
      watchAbort.abort();
    }, inactivityMs);
    const feed = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        inactive = true;
        watchAbort.abort();
      }, inactivityMs);
      this.healthState.lastEventAt = Date.now();
    };
    try {
      for await (const event of this.client.watch(this.options.apiVersion, this.options.kind, {
        ...this.scope,
        ...(this.options.labelSelector ? { labelSelector: this.options.labelSelector } : {}),
        ...(this.options.fieldSelector ? { fieldSelector: this.options.fieldSelector } : {}),
        resourceVersion: this.resourceVersion,
        timeoutSeconds,
        signal: watchAbort.signal,
        ...(this.options.metadataOnly ? { metadataOnly: true } : {}),
      })) {
        feed();
        const obj = event.object;
        if (event.type === 'ERROR') {
          const status = obj as unknown as { code?: number; reason?: string; message?: string };
          throw new KubeApiError(status.code ?? 500, status.reason ?? 'WatchError', status.message ?? 'watch error');
        }
        if (obj?.metadata?.resourceVersion) this.resourceVersion = obj.metadata.resourceVersion;
        if (event.type === 'BOOKMARK') continue;
        const key = objectKey(obj);
        const before = this.store.get(key);
        if (event.type === 'DELETED') {
          this.store.delete(key);
          this.options.onEvent('deleted', obj);
        } else {
          this.store.set(key, obj);
          this.options.onEvent(before ? 'modified' : 'added', obj, before);
        }
      }
    } catch (err) {
      if (inactive && !this.abort.signal.aborted) throw Object.assign(new Error('watch inactive'), { cause: 'inactive' });
      throw err;
    } finally {
      clearTimeout(watchdog);
      this.abort.signal.removeEventListener('abort', onStop);
    }
  }
}

/** Why a watch ended, as a metric label. */
function causeOf(err: unknown): string {
  if ((err as { cause?: unknown })?.cause === 'inactive') return 'inactive';
  if (err instanceof KubeApiError) {
    if (err.status === 410) return 'gone';
    if (err.status === 429) return 'throttled';
    if (err.status >= 500) return 'server-error';
    return `http-${err.status}`;
  }
  if (err instanceof KubeConnectionError) return 'connection';
  if (err instanceof SyntaxError) return 'bad-stream';
  return 'other';
}

function retryAfterMs(err: KubeApiError): number | undefined {
  const seconds = (err as { retryAfterSeconds?: number }).retryAfterSeconds;
  return typeof seconds === 'number' ? seconds * 1000 : undefined;
}
