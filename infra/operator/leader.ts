/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it: one
 * replica holds the lease and acts; the others wait. Every write to the Lease carries the
 * resourceVersion it read, so two candidates can never both win the same term.
 *
 * - The leader renews every `retryPeriodMs`; a renewal that keeps failing for `renewDeadlineMs`
 *   (an API blip shorter than that is survived) ends its leadership at once: `onStoppedLeading`
 *   runs, and it goes back to being a candidate — no crash, no restart loop.
 * - A candidate takes the lease only once it has expired (`leaseDurationMs` after the last renewal
 *   it saw change). renewDeadline < leaseDuration, so a leader that lost contact has stopped acting
 *   before anyone else can start.
 * - Stopping (SIGTERM on a rollout) releases the lease, so a standby takes over within one retry
 *   period instead of waiting for it to expire.
 */
import { KubeApiError, type KubeClient } from '../engine/client.js';
import type { KubeObject } from '../engine/types.js';
import { sleep } from '../engine/util.js';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Called when this candidate becomes leader; `signal` aborts when leadership ends. */
  onStartedLeading(signal: AbortSignal): void | Promise<void>;
  /** Called (and awaited) when leadership ends, before anything else happens. */
  onStoppedLeading(): void | Promise<void>;
  log?: (entry: Record<string, unknown>) => void;
}

const MICRO_TIME = (d: Date) => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export class LeaderElector {
  private leading = false;
  /** Transitions observed, and when this candidate last led (for metrics). */
  leaderSince: number | undefined;

  constructor(
    private readonly client: KubeClient,
    private readonly options: LeaderElectionOptions,
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }

  private get leaseDurationMs() {
    return this.options.leaseDurationMs ?? 15_000;
  }
  private get renewDeadlineMs() {
    return this.options.renewDeadlineMs ?? 10_000;
  }
  private get retryPeriodMs() {
    return this.options.retryPeriodMs ?? 2_000;
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.options.namespace)}/leases`;
  }

  /** Campaigns, leads, and campaigns again after losing, until `signal` aborts; then releases. */
  async run(signal: AbortSignal): Promise<void> {
    const log = this.options.log ?? (() => {});
    // What this candidate last saw of the lease, and when (its own clock): expiry is judged on
    // observed change, not on the holder's timestamps, so clock skew between machines is harmless.
    let observed: { record: string; at: number } | undefined;
    while (!signal.aborted) {
      let acquired = false;
      try {
        const lease = await this.client.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: this.options.namespace, name: this.options.name });
        const spec = lease?.spec ?? {};
        const record = `${spec.holderIdentity ?? ''}|${spec.renewTime ?? ''}|${spec.leaseTransitions ?? 0}`;
        if (!observed || observed.record !== record) observed = { record, at: Date.now() };
        const holder = spec.holderIdentity as string | undefined;
        const durationMs = ((spec.leaseDurationSeconds as number | undefined) ?? this.leaseDurationMs / 1000) * 1000;
        const free = !lease || !holder || holder === this.options.identity || Date.now() - observed.at > durationMs;
        if (free) acquired = await this.write(lease, (lease?.spec?.holderIdentity ?? '') !== this.options.identity);
      } catch (err) {
        log({ msg: 'leader election: cannot read or take the lease', error: errorText(err) });
      }
      if (!acquired) {
        await sleep(this.retryPeriodMs, signal).catch(() => {});
        continue;
      }
      await this.lead(signal);
      observed = undefined;
    }
  }

  /** Holds the lease until a renewal fails for renewDeadline or `signal` aborts. */
  private async lead(signal: AbortSignal): Promise<void> {
    const log = this.options.log ?? (() => {});
    this.leading = true;
    this.leaderSince = Date.now();
    const term = new AbortController();
    log({ msg: 'leader election: leading', identity: this.options.identity, lease: `${this.options.namespace}/${this.options.name}` });
    const started = Promise.resolve(this.options.onStartedLeading(term.signal)).catch((err: unknown) => log({ msg: 'leader: start failed', error: errorText(err) }));
    let lastRenew = Date.now();
    while (!signal.aborted) {
      await sleep(this.retryPeriodMs, signal).catch(() => {});
      if (signal.aborted) break;
      try {
        const lease = await this.client.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: this.options.namespace, name: this.options.name });
        if (lease?.spec?.holderIdentity !== this.options.identity) {
          log({ msg: 'leader election: the lease is held by someone else now', holder: lease?.spec?.holderIdentity });
          break;
        }
        if (await this.write(lease, false)) lastRenew = Date.now();
      } catch (err) {
        log({ msg: 'leader election: renewal failed', error: errorText(err), sinceLastRenewMs: Date.now() - lastRenew });
      }
      if (Date.now() - lastRenew > this.renewDeadlineMs) {
        log({ msg: 'leader election: could not renew within the deadline; stepping down', renewDeadlineMs: this.renewDeadlineMs });
        break;
      }
    }
    term.abort();
    this.leading = false;
    await started;
    await this.options.onStoppedLeading();
    if (signal.aborted) await this.release();
  }

  /** Creates or updates the lease with this candidate as holder; false if someone else's write won. */
  private async write(lease: KubeObject | undefined, newTerm: boolean): Promise<boolean> {
    const now = MICRO_TIME(new Date());
    const spec = {
      holderIdentity: this.options.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      renewTime: now,
      acquireTime: newTerm ? now : (lease?.spec?.acquireTime ?? now),
      leaseTransitions: (lease?.spec?.leaseTransitions ?? 0) + (newTerm && lease ? 1 : 0),
    };
    try {
      if (!lease) {
        await this.client.request('POST', this.path, {
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.options.name, namespace: this.options.namespace }, spec },
        });
      } else {
        await this.client.request('PUT', `${this.path}/${encodeURIComponent(this.options.name)}`, {
          body: { ...lease, apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', spec },
        });
      }
      return true;
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 409) return false; // another candidate wrote first
      throw err;
    }
  }

  /** Gives the lease up (holder cleared, duration 1 s), so a standby need not wait for expiry. */
  private async release(): Promise<void> {
    try {
      const lease = await this.client.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: this.options.namespace, name: this.options.name });
      if (lease?.spec?.holderIdentity !== this.options.identity) return;
      await this.client.request('PUT', `${this.path}/${encodeURIComponent(this.options.name)}`, {
        body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: MICRO_TIME(new Date()) } },
      });
      this.options.log?.({ msg: 'leader election: released the lease' });
    } catch (err) {
      this.options.log?.({ msg: 'leader election: could not release the lease', error: errorText(err) });
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
