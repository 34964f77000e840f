/**
 * A small JSON client for the Kubernetes REST API, on top of client-node's KubeConfig (which knows
 * kubeconfig files, contexts, certificates, tokens and exec plugins).
 *
 * Why not client-node's KubernetesObjectApi: it runs bodies through its typed models, which drops
 * fields the bundled model does not know and strips CRD schema keywords (notes/libraries.md §3.4),
 * and it cannot ask for `fieldValidation=Strict`. The engine sends objects verbatim instead, over
 * one keep-alive connection, and counts its API calls (a no-op deploy reports how many it made).
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest, type RequestOptions } from 'node:https';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { KubeObject, ObjectRef } from './types.js';
import { refOf } from './types.js';

export interface ClientOptions {
  /** Path to a kubeconfig file; default `$KUBECONFIG`, then `~/.kube/config`, then in-cluster. */
  kubeconfig?: string;
  /** Context to use instead of the kubeconfig's current context. */
  context?: string;
  /** Per-request timeout. Default 30 s. */
  requestTimeoutMs?: number;
}

export interface ResourceInfo {
  plural: string;
  namespaced: boolean;
  verbs: string[];
}

/** One cause of a rejected request, e.g. a field conflict: `{ field: '.spec.replicas', message: 'conflict with "kubectl"' }`. */
export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/** A non-2xx answer from the API server, with its Status decoded. */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly causes: StatusCause[] = [],
    readonly ref?: ObjectRef,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

/** The API server could not be reached at all (refused, DNS, TLS, timeout). */
/** Nothing says which cluster to talk to: no file given, no KUBECONFIG, no ~/.kube/config, not in a pod. */
export class NoKubeconfigError extends Error {
  constructor() {
    super('no kubeconfig found: KUBECONFIG is not set, ~/.kube/config does not exist, and this is not a pod with a service account');
    this.name = 'NoKubeconfigError';
  }
}

export class KubeConnectionError extends Error {
  constructor(
    readonly server: string,
    cause: unknown,
  ) {
    const detail = cause instanceof Error ? ((cause as NodeJS.ErrnoException).code ?? cause.message) : String(cause);
    super(`cannot reach the Kubernetes API at ${server}: ${detail}`);
    this.name = 'KubeConnectionError';
  }
}

export interface ApiRequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  /** Return the raw text instead of parsing JSON (pod logs). */
  text?: boolean;
  timeoutMs?: number;
  /** Aborts the request (an AbortError is thrown). */
  signal?: AbortSignal;
  /** Counted here as well as on the client: a run's own API calls (and those of the runs around it). */
  counters?: Array<{ calls: number }>;
}

/**
 * The part of the Kubernetes API the engine uses. `KubeClient` implements it; `scoped()` gives a
 * view for one run: its own call count and a signal that cancels every request it makes.
 */
export interface KubeApi {
  readonly server: string;
  readonly contextName: string;
  /** API calls made through this view. */
  readonly calls: number;
  get(ref: ObjectRef): Promise<KubeObject | undefined>;
  list(apiVersion: string, kind: string, options?: ListOptions): Promise<KubeObject[]>;
  apply(obj: KubeObject, options: ApplyOptions): Promise<KubeObject>;
  create(obj: KubeObject): Promise<KubeObject>;
  /** An RFC 6902 JSON patch (a `test` op makes it conditional), sent as `fieldManager`. */
  jsonPatch(ref: ObjectRef, operations: JsonPatchOperation[], fieldManager: string): Promise<KubeObject>;
  delete(ref: ObjectRef, options?: DeleteOptions): Promise<boolean>;
  isNamespaced(apiVersion: string, kind: string): Promise<boolean>;
  preferredApiVersion(group: string): Promise<string>;
  forgetDiscovery(apiVersion: string): void;
  podLog(namespace: string, pod: string, options: PodLogOptions): Promise<string>;
  scoped(scope: { signal?: AbortSignal }): KubeApi;
}

/** Reads for readiness and evidence: direct API reads today, a watch-fed cache in a controller. */
export type ClusterReader = Pick<KubeApi, 'get' | 'list' | 'podLog'>;

export interface ListOptions {
  namespace?: string;
  /** A namespaced kind across every namespace (when no namespace is given); cluster-wide kinds ignore it. */
  allNamespaces?: boolean;
  labelSelector?: string;
  fieldSelector?: string;
}
export interface JsonPatchOperation {
  op: 'add' | 'remove' | 'replace' | 'test';
  path: string;
  value?: unknown;
}
export interface ApplyOptions {
  fieldManager: string;
  force?: boolean;
  dryRun?: boolean;
}
export interface DeleteOptions {
  propagationPolicy?: 'Background' | 'Foreground' | 'Orphan';
  dryRun?: boolean;
}
export interface PodLogOptions {
  container?: string;
  tailLines?: number;
  previous?: boolean;
}

interface CallContext {
  signal?: AbortSignal;
  counters?: Array<{ calls: number }>;
}

/**
 * How long discovery of a group-version is trusted. A kind missing from a cached answer is asked
 * again sooner (`DISCOVERY_MISS_RECHECK_MS`): a CRD installed after start-up must be found.
 */
const DISCOVERY_TTL_MS = 10 * 60_000;
const DISCOVERY_MISS_RECHECK_MS = 2_000;

export class KubeClient implements KubeApi {
  /** API calls made so far over the client's life (each HTTP request counts once); see `scoped`. */
  calls = 0;
  readonly server: string;
  readonly contextName: string;
  readonly defaultNamespace: string;
  private readonly agent: HttpAgent;
  /** Watches hold a connection each for minutes: their own pool, so they never starve requests. */
  private readonly watchAgent: HttpAgent;
  private readonly discovery = new Map<string, { at: number; resources: Promise<Map<string, ResourceInfo>> }>();
  private readonly tlsOptions: RequestOptions;

  private constructor(
    readonly kc: KubeConfig,
    tls: RequestOptions,
    private readonly requestTimeoutMs: number,
  ) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error(`kubeconfig context "${kc.getCurrentContext()}" names no cluster`);
    this.server = cluster.server.replace(/\/+$/, '');
    this.contextName = kc.getCurrentContext();
    this.defaultNamespace = kc.getContextObject(this.contextName)?.namespace ?? 'default';
    this.tlsOptions = tls;
    this.agent = this.server.startsWith('https:')
      ? new HttpsAgent({ keepAlive: true, maxSockets: 8, ...pickTls(tls) })
      : new HttpAgent({ keepAlive: true, maxSockets: 8 });
    this.watchAgent = this.server.startsWith('https:') ? new HttpsAgent({ keepAlive: false, ...pickTls(tls) }) : new HttpAgent({ keepAlive: false });
  }

  static async create(options: ClientOptions = {}): Promise<KubeClient> {
    const kc = loadKubeConfig(options);
    const tls: RequestOptions = { headers: {} };
    await kc.applyToHTTPSOptions(tls);
    return new KubeClient(kc, tls, options.requestTimeoutMs ?? 30_000);
  }

  close(): void {
    this.agent.destroy();
    this.watchAgent.destroy();
  }

  /**
   * Headers (and basic auth) for one request. Tokens from exec plugins and auth providers expire, so
   * for those users the kubeconfig is asked again each time; certificates and static tokens do not
   * change, so they are taken from what `create` read once (asking again builds an agent and may
   * re-read certificate files on every call).
   */
  private async authOptions(): Promise<RequestOptions> {
    const user = this.kc.getCurrentUser();
    if (!user?.exec && !user?.authProvider) return this.tlsOptions;
    const fresh: RequestOptions = { headers: {} };
    await this.kc.applyToHTTPSOptions(fresh);
    return fresh;
  }

  /**
   * Headers and TLS settings of this client's credentials, for connections it does not make itself
   * (the tunnel's WebSockets): the same user, certificates and server verification as every call.
   */
  async connectionOptions(): Promise<{ headers: Record<string, string>; auth?: string } & Record<string, unknown>> {
    const auth = await this.authOptions();
    return { headers: { ...(auth.headers as Record<string, string>) }, ...(auth.auth ? { auth: auth.auth } : {}), ...pickTls(this.tlsOptions) };
  }

  /**
   * Sends one HTTP request with this client's credentials and TLS settings and resolves with the
   * response, its body unread. Counts the call; a connection failure is a KubeConnectionError.
   */
  private async send(
    method: string,
    url: URL,
    init: { headers: Record<string, string>; agent: HttpAgent; body?: string; timeoutMs?: number; signal?: AbortSignal; counters?: Array<{ calls: number }> },
  ): Promise<IncomingMessage> {
    const auth = await this.authOptions();
    this.calls++;
    for (const counter of init.counters ?? []) counter.calls++;
    init.signal?.throwIfAborted();
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          headers: { ...(auth.headers as Record<string, string>), ...init.headers },
          agent: init.agent,
          ...(auth.auth ? { auth: auth.auth } : {}),
          ...pickTls(this.tlsOptions),
          ...(init.signal ? { signal: init.signal } : {}),
        },
        resolve,
      );
      const timeoutMs = init.timeoutMs;
      if (timeoutMs !== undefined) req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
      req.on('error', (err) => reject(err.name === 'AbortError' ? err : new KubeConnectionError(this.server, err)));
      if (init.body !== undefined) req.write(init.body);
      req.end();
    });
  }

  async request<T = any>(method: string, path: string, options: ApiRequestOptions = {}): Promise<T> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const res = await this.send(method, url, {
      headers: {
        accept: options.text ? '*/*' : 'application/json',
        ...(body !== undefined ? { 'content-type': options.contentType ?? 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}),
      },
      agent: this.agent,
      timeoutMs: options.timeoutMs ?? this.requestTimeoutMs,
      ...(body !== undefined ? { body } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.counters ? { counters: options.counters } : {}),
    });
    const status = res.statusCode ?? 0;
    const text = await readBody(res, this.server);
    if (status >= 200 && status < 300) {
      if (options.text) return text as T;
      return (text ? JSON.parse(text) : undefined) as T;
    }
    throw decodeError(status, text, method, path);
  }

  /** Resource name and scope of a kind, from the API server's discovery (one call per group-version, cached). */
  async resourceFor(apiVersion: string, kind: string, ctx: CallContext = {}): Promise<ResourceInfo> {
    const cached = this.discovery.get(apiVersion);
    const fresh = cached && Date.now() - cached.at < DISCOVERY_TTL_MS ? cached : undefined;
    let info = fresh ? (await fresh.resources).get(kind) : undefined;
    if (!info && (!fresh || Date.now() - fresh.at >= DISCOVERY_MISS_RECHECK_MS)) {
      info = (await this.discover(apiVersion, ctx)).get(kind);
    }
    if (!info) throw new KubeApiError(404, 'NoKindMatch', `the cluster serves ${apiVersion} but no kind ${kind} in it`);
    return info;
  }

  private discover(apiVersion: string, ctx: CallContext): Promise<Map<string, ResourceInfo>> {
    const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    const resources = this.request<{ resources: Array<{ name: string; kind: string; namespaced: boolean; verbs: string[] }> }>('GET', path, ctx).then(
      (list) => {
        const byKind = new Map<string, ResourceInfo>();
        for (const r of list.resources) {
          if (r.name.includes('/')) continue; // subresources such as deployments/status
          byKind.set(r.kind, { plural: r.name, namespaced: r.namespaced, verbs: r.verbs });
        }
        return byKind;
      },
      (err) => {
        if (this.discovery.get(apiVersion)?.resources === resources) this.discovery.delete(apiVersion);
        if (err instanceof KubeApiError && err.status === 404) {
          throw new KubeApiError(404, 'NoKindMatch', `the cluster does not serve ${apiVersion} (is its CRD installed?)`);
        }
        throw err;
      },
    );
    this.discovery.set(apiVersion, { at: Date.now(), resources });
    return resources;
  }

  /** The version the server prefers for an API group (`''` is the core group, always `v1`). */
  async preferredApiVersion(group: string, ctx: CallContext = {}): Promise<string> {
    if (group === '') return 'v1';
    const g = await this.request<{ preferredVersion?: { groupVersion: string }; versions: Array<{ groupVersion: string }> }>('GET', `/apis/${group}`, ctx);
    return g.preferredVersion?.groupVersion ?? g.versions[0]!.groupVersion;
  }

  /** Forgets discovery of one group-version (after a CRD was applied, its kinds appear). */
  forgetDiscovery(apiVersion: string): void {
    this.discovery.delete(apiVersion);
  }

  async collectionPath(apiVersion: string, kind: string, namespace?: string, ctx: CallContext = {}, allNamespaces = false): Promise<string> {
    const info = await this.resourceFor(apiVersion, kind, ctx);
    const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    if (info.namespaced) {
      // Across namespaces only when asked: a forgotten namespace is a bug, not a cluster-wide read.
      if (!namespace && allNamespaces) return `${base}/${info.plural}`;
      if (!namespace) throw new Error(`${kind} is namespaced: a namespace is needed`);
      return `${base}/namespaces/${encodeURIComponent(namespace)}/${info.plural}`;
    }
    return `${base}/${info.plural}`;
  }

  async objectPath(ref: ObjectRef, ctx: CallContext = {}): Promise<string> {
    const info = await this.resourceFor(ref.apiVersion, ref.kind, ctx);
    return `${await this.collectionPath(ref.apiVersion, ref.kind, info.namespaced ? ref.namespace : undefined, ctx)}/${encodeURIComponent(ref.name)}`;
  }

  async isNamespaced(apiVersion: string, kind: string, ctx: CallContext = {}): Promise<boolean> {
    return (await this.resourceFor(apiVersion, kind, ctx)).namespaced;
  }

  /** A view of this client for one run: its own call count; `signal` cancels all its requests. */
  scoped(scope: { signal?: AbortSignal } = {}): KubeApi {
    return new ScopedKubeApi(this, scope.signal, []);
  }

  /** The live object, or undefined when it does not exist. */
  async get(ref: ObjectRef, ctx: CallContext = {}): Promise<KubeObject | undefined> {
    try {
      return await this.request<KubeObject>('GET', await this.objectPath(ref, ctx), ctx);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404 && err.reason !== 'NoKindMatch') return undefined;
      throw err;
    }
  }

  /** Every object of a kind (in one namespace, or cluster-wide), following `continue` tokens. */
  async list(apiVersion: string, kind: string, options: ListOptions = {}, ctx: CallContext = {}): Promise<KubeObject[]> {
    return (await this.listWithVersion(apiVersion, kind, options, ctx)).items;
  }

  /** A list and the resourceVersion it was read at (where a watch starts). */
  async listWithVersion(apiVersion: string, kind: string, options: ListOptions = {}, ctx: CallContext = {}): Promise<{ items: KubeObject[]; resourceVersion: string }> {
    const path = await this.collectionPath(apiVersion, kind, options.namespace, ctx, options.allNamespaces);
    const items: KubeObject[] = [];
    let token: string | undefined;
    let resourceVersion = '';
    do {
      const page = await this.request<{ items: KubeObject[]; metadata?: { continue?: string; resourceVersion?: string } }>('GET', path, {
        query: { labelSelector: options.labelSelector, fieldSelector: options.fieldSelector, limit: 500, continue: token },
        ...ctx,
      });
      // Lists omit apiVersion/kind on their items; put them back so items are self-describing.
      for (const item of page.items) items.push({ ...item, apiVersion, kind });
      token = page.metadata?.continue || undefined;
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
    } while (token);
    return { items, resourceVersion };
  }

  /**
   * One watch request: the events after `resourceVersion` as they come, until the server ends the
   * request (its `timeoutSeconds`), the connection breaks (KubeConnectionError) or `signal` aborts.
   * A refused start (410 Gone: the version is too old) throws KubeApiError. Reconnecting, relisting
   * and noticing a silent connection are the caller's job (see infra/operator/informer.ts).
   */
  async *watch(
    apiVersion: string,
    kind: string,
    options: ListOptions & { resourceVersion: string; timeoutSeconds: number; signal?: AbortSignal; metadataOnly?: boolean },
  ): AsyncGenerator<{ type: string; object: KubeObject }> {
    const path = await this.collectionPath(apiVersion, kind, options.namespace, {}, options.allNamespaces);
    const url = new URL(this.server + path);
    const query: Record<string, string | undefined> = {
      watch: '1',
      resourceVersion: options.resourceVersion,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(options.timeoutSeconds),
      labelSelector: options.labelSelector,
      fieldSelector: options.fieldSelector,
    };
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    const res = await this.send('GET', url, {
      // Metadata only (PartialObjectMetadata): what a watch of owned objects needs, a fraction of the bytes.
      headers: { accept: options.metadataOnly ? 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1' : 'application/json' },
      agent: this.watchAgent,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (res.statusCode !== 200) throw decodeError(res.statusCode ?? 0, await readBody(res, this.server), 'GET', path);
    try {
      for await (const raw of lines(res)) {
        const line = raw.trim();
        if (!line) continue;
        const event = JSON.parse(line) as { type: string; object: KubeObject };
        if (event.object && event.type !== 'ERROR') event.object = { ...event.object, apiVersion, kind };
        yield event;
      }
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      throw new KubeConnectionError(this.server, err);
    } finally {
      res.destroy();
    }
  }

  async jsonPatch(ref: ObjectRef, operations: JsonPatchOperation[], fieldManager: string, ctx: CallContext = {}): Promise<KubeObject> {
    try {
      return await this.request<KubeObject>('PATCH', await this.objectPath(ref, ctx), {
        ...ctx,
        body: operations,
        contentType: 'application/json-patch+json',
        query: { fieldManager },
      });
    } catch (err) {
      if (err instanceof KubeApiError) throw new KubeApiError(err.status, err.reason, err.message, err.causes, ref);
      throw err;
    }
  }

  /**
   * Server-side apply: creates or updates `obj` with the fields it lists, owned by `fieldManager`.
   * `fieldValidation=Strict` makes an unknown or duplicated field an error instead of a silent drop.
   */
  async apply(obj: KubeObject, options: ApplyOptions, ctx: CallContext = {}): Promise<KubeObject> {
    const ref = refOf(obj);
    try {
      return await this.request<KubeObject>('PATCH', await this.objectPath(ref, ctx), {
        ...ctx,
        body: obj,
        contentType: 'application/apply-patch+yaml',
        query: {
          fieldManager: options.fieldManager,
          fieldValidation: 'Strict',
          ...(options.force ? { force: true } : {}),
          ...(options.dryRun ? { dryRun: 'All' } : {}),
        },
      });
    } catch (err) {
      if (err instanceof KubeApiError) throw new KubeApiError(err.status, err.reason, err.message, err.causes, ref);
      throw err;
    }
  }

  /** Creates; a 409 AlreadyExists if the name is taken (what makes a revision number unique). */
  async create(obj: KubeObject, ctx: CallContext = {}): Promise<KubeObject> {
    const ref = refOf(obj);
    const info = await this.resourceFor(ref.apiVersion, ref.kind, ctx);
    try {
      return await this.request<KubeObject>('POST', await this.collectionPath(ref.apiVersion, ref.kind, info.namespaced ? ref.namespace : undefined, ctx), {
        ...ctx,
        body: obj,
        query: { fieldManager: 'kreg', fieldValidation: 'Strict' },
      });
    } catch (err) {
      if (err instanceof KubeApiError) throw new KubeApiError(err.status, err.reason, err.message, err.causes, ref);
      throw err;
    }
  }

  /** Deletes; true when it existed. Background propagation: dependents (pods, ReplicaSets) go too. */
  async delete(ref: ObjectRef, options: DeleteOptions = {}, ctx: CallContext = {}): Promise<boolean> {
    try {
      await this.request('DELETE', await this.objectPath(ref, ctx), {
        ...ctx,
        body: { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: options.propagationPolicy ?? 'Background', ...(options.dryRun ? { dryRun: ['All'] } : {}) },
      });
      return true;
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return false;
      throw err;
    }
  }

  /** The last lines of a container's log (`previous`: the container that ran before the last restart). */
  /** A long-lived GET on the watch pool (no timeout), its body unread: log streams. */
  async stream(method: string, url: URL, signal?: AbortSignal): Promise<IncomingMessage> {
    return this.send(method, url, { headers: { accept: '*/*' }, agent: this.watchAgent, ...(signal ? { signal } : {}) });
  }

  async podLog(namespace: string, pod: string, options: PodLogOptions, ctx: CallContext = {}): Promise<string> {
    return this.request<string>('GET', `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log`, {
      ...ctx,
      query: { container: options.container, tailLines: options.tailLines ?? 20, previous: options.previous || undefined },
      text: true,
    });
  }
}

/**
 * Streams a container's log as it is written (`follow=true`), one line at a time, from `sinceSeconds`
 * ago (or the whole log), until the container stops, the connection breaks or `signal` aborts.
 */
export async function* followPodLog(
  client: KubeClient,
  namespace: string,
  pod: string,
  options: { container?: string; sinceSeconds?: number; signal?: AbortSignal },
): AsyncGenerator<string> {
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log`;
  const url = new URL(client.server + path);
  url.searchParams.set('follow', 'true');
  if (options.container) url.searchParams.set('container', options.container);
  if (options.sinceSeconds !== undefined) url.searchParams.set('sinceSeconds', String(options.sinceSeconds));
  const res = await client.stream('GET', url, options.signal);
  if (res.statusCode !== 200) throw decodeError(res.statusCode ?? 0, await readBody(res, client.server), 'GET', path);
  try {
    yield* lines(res);
  } finally {
    res.destroy();
  }
}

/** A streamed response body, line by line (a last line without a newline included). */
async function* lines(res: IncomingMessage): AsyncGenerator<string> {
  let buffered = '';
  for await (const chunk of res) {
    buffered += (chunk as Buffer).toString('utf8');
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
    }
  }
  if (buffered) yield buffered;
}

/** One run's view of a client: same connection and discovery, its own count and cancellation. */
class ScopedKubeApi implements KubeApi {
  private readonly ctx: CallContext;
  private readonly counter = { calls: 0 };
  constructor(
    private readonly client: KubeClient,
    private readonly signal: AbortSignal | undefined,
    outer: Array<{ calls: number }>,
  ) {
    this.ctx = { counters: [...outer, this.counter], ...(signal ? { signal } : {}) };
  }
  get server() {
    return this.client.server;
  }
  get contextName() {
    return this.client.contextName;
  }
  get calls() {
    return this.counter.calls;
  }
  get(ref: ObjectRef) {
    return this.client.get(ref, this.ctx);
  }
  list(apiVersion: string, kind: string, options?: ListOptions) {
    return this.client.list(apiVersion, kind, options, this.ctx);
  }
  apply(obj: KubeObject, options: ApplyOptions) {
    return this.client.apply(obj, options, this.ctx);
  }
  create(obj: KubeObject) {
    return this.client.create(obj, this.ctx);
  }
  jsonPatch(ref: ObjectRef, operations: JsonPatchOperation[], fieldManager: string) {
    return this.client.jsonPatch(ref, operations, fieldManager, this.ctx);
  }
  delete(ref: ObjectRef, options?: DeleteOptions) {
    return this.client.delete(ref, options, this.ctx);
  }
  isNamespaced(apiVersion: string, kind: string) {
    return this.client.isNamespaced(apiVersion, kind, this.ctx);
  }
  preferredApiVersion(group: string) {
    return this.client.preferredApiVersion(group, this.ctx);
  }
  forgetDiscovery(apiVersion: string) {
    this.client.forgetDiscovery(apiVersion);
  }
  podLog(namespace: string, pod: string, options: PodLogOptions) {
    return this.client.podLog(namespace, pod, options, this.ctx);
  }
  /** A scope inside this one: its calls count here too; its signal, or this scope's, cancels it. */
  scoped(scope: { signal?: AbortSignal }) {
    const signal = scope.signal && this.signal ? AbortSignal.any([scope.signal, this.signal]) : (scope.signal ?? this.signal);
    return new ScopedKubeApi(this.client, signal, this.ctx.counters!);
  }
}

export function loadKubeConfig(options: Pick<ClientOptions, 'kubeconfig' | 'context'> = {}): KubeConfig {
  const kc = new KubeConfig();
  if (options.kubeconfig) {
    // A KUBECONFIG-style list (a:b) merges like kubectl: the first file's current context wins.
    const [first, ...others] = options.kubeconfig.split(delimiter).filter(Boolean);
    kc.loadFromFile(first!);
    for (const file of others) {
      const more = new KubeConfig();
      more.loadFromFile(file);
      kc.mergeConfig(more, true);
    }
  } else {
    // With nothing to load, client-node silently falls back to http://localhost:8080 and later fails
    // with a TLS message that hides the real cause; say it instead.
    const home = process.env.HOME ?? '';
    const inCluster = existsSync('/var/run/secrets/kubernetes.io/serviceaccount/token') && process.env.KUBERNETES_SERVICE_HOST;
    if (!process.env.KUBECONFIG && !existsSync(join(home, '.kube', 'config')) && !inCluster) {
      throw new NoKubeconfigError();
    }
    kc.loadFromDefault();
  }
  if (options.context) {
    if (!kc.getContextObject(options.context)) {
      const known = kc.getContexts().map((c) => c.name);
      throw new Error(`no context "${options.context}" in the kubeconfig (known: ${known.join(', ') || 'none'})`);
    }
    kc.setCurrentContext(options.context);
  }
  return kc;
}

/**
 * A response's whole body as text. A body cut off (the server died or the connection was reset
 * after the headers) is a connection failure, like one before the headers: the same request may
 * well succeed once the server is back, and a caller must not take it for an answer.
 */
function readBody(res: IncomingMessage, server: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', (err) => reject(err.name === 'AbortError' ? err : new KubeConnectionError(server, err)));
  });
}

function pickTls(o: RequestOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername'] as const) {
    if (o[k] !== undefined) out[k] = o[k];
  }
  return out;
}

function decodeError(status: number, text: string, method: string, path: string): KubeApiError {
  try {
    const s = JSON.parse(text) as { kind?: string; reason?: string; message?: string; details?: { causes?: StatusCause[]; retryAfterSeconds?: number } };
    if (s.kind === 'Status') {
      const err = new KubeApiError(status, s.reason ?? String(status), s.message ?? text, s.details?.causes ?? []);
      // 429 and some 5xx say when to come back.
      if (typeof s.details?.retryAfterSeconds === 'number') Object.assign(err, { retryAfterSeconds: s.details.retryAfterSeconds });
      return err;
    }
  } catch {
    // not JSON: fall through
  }
  const reason = status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : status === 404 ? 'NotFound' : String(status);
  return new KubeApiError(status, reason, `${method} ${path}: HTTP ${status} ${text.slice(0, 200)}`.trim());
}

