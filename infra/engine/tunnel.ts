/**
 * A local TCP port that forwards to a Service's pods through the Kubernetes API (the `pods/portforward`
 * subresource, as `kubectl port-forward` does), without kubectl and without cluster networking.
 *
 * Unlike `kubectl port-forward svc/x`, which pins one pod for its whole life, every accepted local
 * connection is routed on its own: to a ready pod backing the Service (EndpointSlices), preferring
 * the pod used last. So a tunnel survives losing its pod (rollout, eviction, `kubectl delete pod`):
 *
 * - opening the stream to the chosen pod fails, or the stream breaks before the pod sent a single
 *   byte (e.g. the pod stopped listening): the connection is re-routed to another (or the same,
 *   re-listed) ready pod, replaying what the client already sent, until `readyTimeoutMs`;
 * - no pod is ready: the connection waits for one (re-listing every 500 ms) until `readyTimeoutMs`,
 *   then the local socket is closed and `lastError()` says why;
 * - the stream breaks after the pod answered: the local socket is closed, like a server closing a
 *   connection. HTTP clients open a new connection, and that one goes to a ready pod.
 *
 * Transport: one WebSocket per connection (subprotocol `v4.channel.k8s.io`, the protocol the
 * client-node `PortForward` class speaks), opened with the `ws` package and the same credentials and
 * TLS settings as every other call of the engine's `KubeClient` (one API stack). The client-node `PortForward.portForward()` helper is not used: measured on
 * Kubernetes 1.35 it discards the error channel and ignores the WebSocket closing, so a refused
 * connection left the local socket hanging until the client timed out (8 s in the experiment)
 * instead of being re-routed within ~15 ms; it also has no backpressure and closes the stream
 * when the client half-closes. Owning the WebSocket gives us the error channel, the "has the pod
 * answered yet" signal that decides between re-routing and closing, replay, and flow control.
 *
 * Wire format (legacy WebSocket port-forward, one port): binary messages whose first byte is the
 * channel (0 = data, 1 = error); the first two bytes the server sends on each channel are the port
 * number (little endian), not data. The client writes `[0, ...bytes]`. There is no half-close: a
 * client's FIN is not forwarded; the stream stays open until the pod closes it or the client closes.
 * `ws` is the WebSocket library client-node itself depends on (declare it in package.json if the
 * engine ever ships without client-node's tree).
 *
 * Costs, measured on the local 1.35 cluster: opening a connection takes ~30 ms (EndpointSlice list
 * and pod read, ~8 ms each, then the WebSocket handshake, ~13 ms); bulk data ~70 MiB/s each way.
 * The kubelet closes a stream ~1 s after the pod closed its end of the connection.
 */
import * as net from 'node:net';
import type { V1Pod, V1ServicePort } from '@kubernetes/client-node';
import WebSocket from 'ws';
import { KubeApiError, type KubeClient } from './client.js';
import type { KubeObject } from './types.js';

export interface ServiceTunnel {
  /** `http://127.0.0.1:<localPort>` */
  url: string;
  localPort: number;
  /** Stops listening and tears down every stream. Idempotent. */
  close(): Promise<void>;
  /**
   * `connections`: local connections accepted. `rerouted`: how many of them had to be re-routed to
   * another (or the same, re-listed) pod because opening or the stream failed before the pod
   * answered. `pods`: the pods connections were served by, in order, consecutive repeats collapsed
   * (`[a, b]` = first a, then b).
   */
  stats(): { connections: number; rerouted: number; pods: string[] };
  /** Why the most recent connection that could not be served was closed, if any. */
  lastError(): TunnelError | undefined;
}

export interface TunnelError {
  /** The tunnel's connection number (1-based, in accept order). */
  connection: number;
  /** `no-ready-pod`: nothing ready within readyTimeoutMs; `unroutable`: every attempt failed. */
  kind: 'no-ready-pod' | 'unroutable';
  message: string;
  at: number;
}

export interface ServiceTunnelOptions {
  namespace: string;
  service: string;
  /** Service port number or name; default the Service's first port. */
  port?: number | string;
  /** Local port on 127.0.0.1; default 0 (ephemeral). */
  localPort?: number;
  /** How long a connection waits for a ready pod (and keeps re-routing) before it is closed; default 30 s. */
  readyTimeoutMs?: number;
  /** One line per notable event, e.g. `connection 3 → pod registration-abc (rerouted: pod registration-xyz went away)`. */
  log?: (line: string) => void;
}

const RELIST_INTERVAL_MS = 500;
/** Client bytes kept for replay until the pod answers; a connection that sent more cannot be re-routed. */
const REPLAY_LIMIT_BYTES = 1024 * 1024;
/** Local → pod: pause reading the local socket while this much is queued on the WebSocket. */
const WS_HIGH_WATER_BYTES = 1024 * 1024;
const API_TIMEOUT_MS = 10_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const CHANNEL_DATA = 0;
const CHANNEL_ERROR = 1;

/** 'connected', or why the attempt failed and how long its stream had been open. */
type Attempt = 'connected' | { reason: string; openMs: number };

interface Target {
  pod: string;
  port: number;
}

/** The Service port the tunnel forwards to, and how its targetPort resolves on a pod. */
interface PortPlan {
  servicePort: V1ServicePort;
  describe: string;
}

export async function openServiceTunnel(client: KubeClient, opts: ServiceTunnelOptions): Promise<ServiceTunnel> {
  const { namespace, service } = opts;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  const log = opts.log ?? (() => {});
  const wsBase = client.server.replace(/^http(s?):\/\//, 'ws$1://');

  const svc = await withTimeout(
    client.get({ apiVersion: 'v1', kind: 'Service', namespace, name: service }),
    API_TIMEOUT_MS,
    `reading service ${namespace}/${service}`,
  ).then(
    (found) => {
      if (!found) throw new KubeApiError(404, 'NotFound', `services "${service}" not found`);
      return found;
    },
  ).catch((err: unknown) => {
    throw new Error(`tunnel: cannot read service ${namespace}/${service}: ${apiErrorMessage(err)}`);
  });
  const plan = planPort(`${namespace}/${service}`, (svc.spec?.ports ?? []) as V1ServicePort[], opts.port);

  let connectionCount = 0;
  let reroutedCount = 0;
  const pods: string[] = [];
  let lastPod: string | undefined;
  let lastError: TunnelError | undefined;
  let closed = false;
  const live = new Set<Connection>();

  /** Ready pods behind the Service, in EndpointSlice order, without duplicates. */
  const readyPods = async (): Promise<Array<{ pod: string; slicePort?: number }>> => {
    const slices = await withTimeout(
      client.list('discovery.k8s.io/v1', 'EndpointSlice', { namespace, labelSelector: `kubernetes.io/service-name=${service}` }),
      API_TIMEOUT_MS,
      'listing EndpointSlices',
    );
    const out: Array<{ pod: string; slicePort?: number }> = [];
    const seen = new Set<string>();
    for (const slice of slices as Array<KubeObject & { ports?: Array<{ name?: string; port?: number }>; endpoints?: any[] }>) {
      const wanted = plan.servicePort.name ?? '';
      const slicePort = (slice.ports ?? []).find((p) => (p.name ?? '') === wanted)?.port;
      for (const ep of slice.endpoints ?? []) {
        if (ep.conditions?.ready !== true || ep.conditions?.terminating === true) continue;
        if (ep.targetRef?.kind !== 'Pod' || !ep.targetRef.name) continue;
        if (ep.targetRef.namespace && ep.targetRef.namespace !== namespace) continue;
        if (seen.has(ep.targetRef.name)) continue;
        seen.add(ep.targetRef.name);
        out.push({ pod: ep.targetRef.name, ...(slicePort !== undefined ? { slicePort } : {}) });
      }
    }
    return out;
  };

  /** Reads the pod to skip one being deleted and to resolve a named targetPort. Throws with a short reason. */
  const resolveTarget = async (pod: string, slicePort: number | undefined): Promise<Target> => {
    let object: V1Pod | undefined;
    try {
      object = (await withTimeout(client.get({ apiVersion: 'v1', kind: 'Pod', namespace, name: pod }), API_TIMEOUT_MS, `reading pod ${pod}`)) as V1Pod | undefined;
    } catch (err) {
      throw new Error(`could not be read: ${apiErrorMessage(err)}`);
    }
    if (!object) throw new Error('went away (pod not found)');
    if (object.metadata?.deletionTimestamp) throw new Error('went away (being deleted)');
    const port = resolveTargetPort(plan.servicePort, object, slicePort);
    if (port === undefined) {
      throw new Error(`has no container port named "${String(plan.servicePort.targetPort)}"`);
    }
    return { pod, port };
  };

  class Connection {
    readonly id: number;
    /** The open stream, or the one being opened. */
    private ws: WebSocket | undefined;
    private target: Target | undefined;
    /** Client bytes that arrived while no stream was open. */
    private unsent: Buffer[] = [];
    private unsentBytes = 0;
    /** Client bytes sent to the current stream but not answered yet: replayed to the next pod on a re-route. */
    private replay: Buffer[] = [];
    private replayBytes = 0;
    private replayable = true;
    /** Whether the client sent anything on the current stream. */
    private sentToStream = false;
    private answered = false;
    private done = false;
    /** Why earlier attempts failed, for the log line once a pod answers. */
    private failures: string[] = [];
    private counted = false;

    constructor(readonly socket: net.Socket) {
      this.id = ++connectionCount;
      socket.setNoDelay(true);
      socket.on('error', () => {
        /* followed by 'close'; a client resetting its connection is not our error */
      });
      socket.on('data', (chunk: Buffer) => this.fromClient(chunk));
      socket.on('close', () => this.finish());
      socket.on('drain', () => {
        if (this.ws?.isPaused) this.ws.resume();
      });
    }

    start(): void {
      this.route().catch((err: unknown) => {
        this.giveUp('unroutable', `internal error: ${err instanceof Error ? err.message : String(err)}`);
      });
    }

    private fromClient(chunk: Buffer): void {
      const ws = this.ws;
      if (ws && ws.readyState === WebSocket.OPEN) {
        this.send(ws, chunk);
        return;
      }
      this.unsent.push(chunk);
      this.unsentBytes += chunk.length;
      // Nowhere to send it yet: keep it, but stop reading once that is a lot.
      if (this.unsentBytes > REPLAY_LIMIT_BYTES) this.socket.pause();
    }

    /** Sends to the stream, remembering the bytes for a replay until the pod answers. */
    private send(ws: WebSocket, chunk: Buffer): void {
      this.sentToStream = true;
      if (!this.answered && this.replayable) {
        if (this.replayBytes + chunk.length <= REPLAY_LIMIT_BYTES) {
          this.replay.push(chunk);
          this.replayBytes += chunk.length;
        } else {
          this.replayable = false;
          this.replay = [];
          this.replayBytes = 0;
        }
      }
      const frame = Buffer.allocUnsafe(chunk.length + 1);
      frame[0] = CHANNEL_DATA;
      chunk.copy(frame, 1);
      ws.send(frame, (err) => {
        if (!err && this.ws === ws && this.socket.isPaused() && ws.bufferedAmount < WS_HIGH_WATER_BYTES / 4) {
          this.socket.resume();
        }
      });
      if (ws.bufferedAmount > WS_HIGH_WATER_BYTES) this.socket.pause();
    }

    /**
     * Finds a ready pod and opens a stream to it; on a failure before the pod answered, tries the
     * next one. Waiting for a ready pod is bounded by readyTimeoutMs, counted from the start or from
     * the failure of a stream that had been up for a while (a fresh episode, e.g. an idle keep-alive
     * connection whose pod went away).
     */
    private async route(): Promise<void> {
      let deadline = Date.now() + readyTimeoutMs;
      const failedPods = new Set<string>();
      let waitingLogged = false;
      while (!this.done) {
        let candidates: Array<{ pod: string; slicePort?: number }>;
        try {
          candidates = await readyPods();
        } catch (err) {
          candidates = [];
          this.failures.push(`listing EndpointSlices failed: ${apiErrorMessage(err)}`);
        }
        if (this.done) return;
        const fresh = candidates.filter((c) => !failedPods.has(c.pod));
        const pick = fresh.find((c) => c.pod === lastPod) ?? fresh[0];
        if (!pick) {
          if (Date.now() >= deadline) {
            const last = this.failures.at(-1);
            if (candidates.length === 0) {
              this.giveUp(
                'no-ready-pod',
                `no ready pod behind service ${namespace}/${service} after ${seconds(readyTimeoutMs)}` +
                  (last ? ` (last failure: ${last})` : ''),
              );
            } else {
              this.giveUp('unroutable', `every ready pod behind service ${namespace}/${service} failed for ${seconds(readyTimeoutMs)}; last: ${last}`);
            }
            return;
          }
          if (candidates.length === 0 && !waitingLogged) {
            waitingLogged = true;
            log(`connection ${this.id}: no ready pod behind service ${namespace}/${service}; waiting up to ${seconds(deadline - Date.now())}`);
          }
          // Every ready pod already failed for this connection: retry them after a re-list.
          if (candidates.length > 0) failedPods.clear();
          await sleep(Math.min(RELIST_INTERVAL_MS, Math.max(0, deadline - Date.now())));
          continue;
        }
        const outcome = await this.attempt(pick.pod, pick.slicePort);
        if (outcome === 'connected' || this.done) return;
        failedPods.add(pick.pod);
        if (!this.replayable) {
          this.giveUp('unroutable', `pod ${pick.pod} ${outcome.reason}, and the client had sent too much to replay it elsewhere`);
          return;
        }
        if (!this.counted) {
          this.counted = true;
          reroutedCount++;
        }
        if (outcome.openMs >= 1000) deadline = Math.max(deadline, Date.now() + readyTimeoutMs);
        this.failures.push(`pod ${pick.pod} ${outcome.reason}`);
        log(`connection ${this.id}: pod ${pick.pod} ${outcome.reason}; re-routing`);
      }
    }

    /**
     * One try: resolves 'connected' once the pod answered (or the client left, or both sides closed
     * quietly), else why it failed before the pod answered. Every listener is attached when the
     * WebSocket is created: `ws` can emit 'message' and 'close' in the same tick as 'open' (frames
     * that arrived with the upgrade response), before any awaiting code would run.
     */
    private async attempt(pod: string, slicePort: number | undefined): Promise<Attempt> {
      let target: Target;
      try {
        target = await resolveTarget(pod, slicePort);
      } catch (err) {
        return { reason: err instanceof Error ? err.message : String(err), openMs: 0 };
      }
      let wsOptions: WebSocket.ClientOptions;
      try {
        wsOptions = (await client.connectionOptions()) as WebSocket.ClientOptions;
      } catch (err) {
        return { reason: `could not be reached: kubeconfig credentials failed: ${err instanceof Error ? err.message : String(err)}`, openMs: 0 };
      }
      if (this.done) return 'connected';
      wsOptions.handshakeTimeout = HANDSHAKE_TIMEOUT_MS;
      wsOptions.perMessageDeflate = false;
      const path =
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/portforward` +
        `?ports=${target.port}`;
      const ws = new WebSocket(wsBase + path, ['v4.channel.k8s.io'], wsOptions);
      this.ws = ws;
      return new Promise<Attempt>((resolve) => {
        let settled = false;
        const settle = (v: Attempt) => {
          if (!settled) {
            settled = true;
            resolve(v);
          }
        };
        let openedAt: number | undefined;
        let handshakeError: string | undefined;
        let errorText = '';
        const portBytes = [2, 2];

        ws.on('unexpected-response', (req, res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            if (body.length < 2000) body += d;
          });
          const finish = () => {
            handshakeError ??= `could not be reached: HTTP ${res.statusCode} ${statusMessage(body)}`.trim();
            req.destroy();
            ws.terminate();
          };
          res.on('end', finish);
          res.on('error', finish);
          setTimeout(finish, 2000).unref();
        });
        ws.on('error', (err) => {
          if (openedAt === undefined) handshakeError ??= `could not be reached: ${err.message}`;
          else if (!errorText) errorText = err.message;
        });
        ws.on('open', () => {
          openedAt = Date.now();
          if (this.done) {
            ws.terminate();
            return;
          }
          this.target = target;
          this.sentToStream = false;
          // Replay what the previous stream did not answer, then what waited, then read on.
          const pending = [...this.replay, ...this.unsent];
          this.replay = [];
          this.replayBytes = 0;
          this.unsent = [];
          this.unsentBytes = 0;
          for (const chunk of pending) this.send(ws, chunk);
          if (this.socket.isPaused() && ws.bufferedAmount <= WS_HIGH_WATER_BYTES) this.socket.resume();
        });
        ws.on('message', (data: Buffer, isBinary: boolean) => {
          if (!isBinary || data.length === 0 || this.done) return;
          const channel = data[0]!;
          let payload = data.subarray(1);
          if (channel === CHANNEL_DATA || channel === CHANNEL_ERROR) {
            const skip = Math.min(portBytes[channel]!, payload.length);
            portBytes[channel]! -= skip;
            payload = payload.subarray(skip);
          }
          if (payload.length === 0) return;
          if (channel === CHANNEL_DATA) {
            if (!this.answered) this.commit(target);
            if (!this.socket.destroyed && !this.socket.write(payload)) ws.pause();
          } else if (channel === CHANNEL_ERROR) {
            errorText += payload.toString('utf8');
          }
        });
        ws.on('close', () => {
          if (this.ws === ws) this.ws = undefined;
          if (this.done) return settle('connected');
          if (openedAt === undefined) {
            return settle({ reason: handshakeError ?? 'could not be reached: the stream closed during the handshake', openMs: 0 });
          }
          if (this.answered) {
            if (errorText) log(`connection ${this.id}: stream from pod ${target.pod} ended: ${oneLine(errorText)}`);
            this.socket.end();
            return settle('connected');
          }
          const openMs = Date.now() - openedAt;
          if (errorText) return settle({ reason: `failed before answering: ${oneLine(errorText)}`, openMs });
          if (this.sentToStream) return settle({ reason: `closed the stream without answering (after ${openMs} ms)`, openMs });
          // Neither side said anything: behave like a server closing an idle connection.
          this.socket.end();
          settle('connected');
        });
      });
    }

    /** The pod answered: from now on a broken stream closes the local socket. */
    private commit(target: Target): void {
      this.answered = true;
      this.replay = [];
      this.replayBytes = 0;
      lastPod = target.pod;
      if (pods.at(-1) !== target.pod) pods.push(target.pod);
      const note = this.failures.length > 0 ? ` (rerouted: ${this.failures.map((f) => clip(f, 160)).join('; ')})` : '';
      log(`connection ${this.id} → pod ${target.pod}${note}`);
    }

    private giveUp(kind: TunnelError['kind'], message: string): void {
      if (this.done) return;
      lastError = { connection: this.id, kind, message, at: Date.now() };
      log(`connection ${this.id}: closed: ${message}`);
      this.socket.destroy();
    }

    /** The local socket closed: tear the stream down. */
    private finish(): void {
      if (this.done) return;
      this.done = true;
      live.delete(this);
      const ws = this.ws;
      this.ws = undefined;
      if (ws && ws.readyState !== WebSocket.CLOSED) ws.terminate();
    }
  }

  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    const connection = new Connection(socket);
    live.add(connection);
    connection.start();
  });
  server.on('error', (err) => log(`tunnel: listener error: ${err.message}`));
  const localPort = await new Promise<number>((resolve, reject) => {
    const onError = (err: Error) => reject(new Error(`tunnel: cannot listen on 127.0.0.1:${opts.localPort ?? 0}: ${err.message}`));
    server.once('error', onError);
    server.listen(opts.localPort ?? 0, '127.0.0.1', () => {
      server.off('error', onError);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
  log(`tunnel 127.0.0.1:${localPort} → service ${namespace}/${service} ${plan.describe}`);

  return {
    url: `http://127.0.0.1:${localPort}`,
    localPort,
    stats: () => ({ connections: connectionCount, rerouted: reroutedCount, pods: [...pods] }),
    lastError: () => lastError,
    close: async () => {
      if (closed) return;
      closed = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const connection of [...live]) connection.socket.destroy();
      await stopped;
    },
  };
}

/** Picks the Service port: by number or name (a numeric string is a number), default the first. */
function planPort(what: string, ports: V1ServicePort[], wanted: number | string | undefined): PortPlan {
  if (ports.length === 0) throw new Error(`tunnel: service ${what} has no ports`);
  const asNumber = typeof wanted === 'number' ? wanted : wanted !== undefined && /^\d+$/.test(wanted) ? Number(wanted) : undefined;
  const servicePort =
    wanted === undefined
      ? ports[0]!
      : ports.find((p) => (asNumber !== undefined ? p.port === asNumber : p.name === wanted));
  if (!servicePort) {
    const have = ports.map((p) => (p.name ? `${p.name}(${p.port})` : String(p.port))).join(', ');
    throw new Error(`tunnel: service ${what} has no port ${String(wanted)}; it has ${have}`);
  }
  if (servicePort.protocol && servicePort.protocol !== 'TCP') {
    throw new Error(`tunnel: service ${what} port ${servicePort.port} is ${servicePort.protocol}; only TCP can be forwarded`);
  }
  const target = servicePort.targetPort ?? servicePort.port;
  return { servicePort, describe: `port ${servicePort.port} → targetPort ${String(target)}` };
}

/** targetPort on one pod: a number as is, a name through the pod's container ports (else the EndpointSlice's port). */
function resolveTargetPort(servicePort: V1ServicePort, pod: V1Pod, slicePort: number | undefined): number | undefined {
  const target = servicePort.targetPort ?? servicePort.port;
  if (typeof target === 'number') return target;
  if (/^\d+$/.test(target)) return Number(target);
  for (const container of pod.spec?.containers ?? []) {
    for (const p of container.ports ?? []) {
      if (p.name === target && (p.protocol ?? 'TCP') === 'TCP') return p.containerPort;
    }
  }
  return slicePort;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${seconds(ms)}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The `message` of a Kubernetes Status body, else the body itself, on one line. */
function statusMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === 'string') return oneLine(parsed.message);
  } catch {
    /* not JSON */
  }
  return oneLine(body).slice(0, 300);
}

/** A refused API call → `HTTP 404: services "x" not found`; anything else → its message. */
function apiErrorMessage(err: unknown): string {
  if (err instanceof KubeApiError) return `HTTP ${err.status}: ${oneLine(err.message)}`;
  return err instanceof Error ? err.message : String(err);
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
