/**
 * Prometheus metrics. One registry per app instance (tests build many apps in one process).
 * Routes are labelled by their pattern ("/users/:id"), never the raw path, and unmatched requests
 * share one label, so a scanner cannot blow up the series count.
 */
import type { MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { PasswordHasher } from '../users/hasher.js';

export type RegistrationOutcome = 'created' | 'duplicate' | 'invalid' | 'rate_limited' | 'overloaded' | 'error';
export type LoginOutcome = 'success' | 'failure' | 'invalid' | 'rate_limited' | 'overloaded' | 'error';

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'method' | 'route' | 'status'>;
  readonly duration: Histogram<'method' | 'route' | 'status'>;
  readonly registrations: Counter<'outcome'>;
  readonly logins: Counter<'outcome'>;
  readonly rehashes: Counter;

  constructor(opts: { hasher: PasswordHasher; defaultMetrics?: boolean }) {
    const registers = [this.registry];
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests by method, route pattern and status code',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.duration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by method, route pattern and status code',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.registrations = new Counter({
      name: 'registrations_total',
      help: 'Registration attempts by outcome',
      labelNames: ['outcome'],
      registers,
    });
    this.logins = new Counter({
      name: 'logins_total',
      help: 'Login attempts by outcome',
      labelNames: ['outcome'],
      registers,
    });
    this.rehashes = new Counter({
      name: 'password_rehashes_total',
      help: 'Stored hashes upgraded to the current parameters at login',
      registers,
    });
    const hasher = opts.hasher;
    new Gauge({
      name: 'password_hash_in_flight',
      help: 'Password hashes being computed now',
      registers,
      collect() {
        this.set(hasher.stats().inFlight);
      },
    });
    new Gauge({
      name: 'password_hash_queued',
      help: 'Requests waiting for a hashing slot',
      registers,
      collect() {
        this.set(hasher.stats().queued);
      },
    });
    new Gauge({
      name: 'password_hash_rejected',
      help: 'Requests shed with 503 because the hashing queue was full (since start)',
      registers,
      collect() {
        this.set(hasher.stats().rejected);
      },
    });
    // Pre-create the outcome series so dashboards see zeros instead of gaps.
    for (const o of ['created', 'duplicate', 'invalid', 'rate_limited', 'overloaded', 'unavailable', 'error'] as const) {
      this.registrations.inc({ outcome: o }, 0);
    }
    for (const o of ['success', 'failure', 'invalid', 'rate_limited', 'overloaded', 'unavailable', 'error'] as const) {
      this.logins.inc({ outcome: o }, 0);
    }
  }

  middleware(): MiddlewareHandler {
    return async (c, next) => {
      const started = performance.now();
      try {
        await next();
      } finally {
        const handler = matchedRoutes(c).findLast((r) => r.method !== 'ALL');
        const labels = { method: c.req.method, route: handler?.path ?? 'unmatched', status: String(c.res.status) };
        this.requests.inc(labels);
        this.duration.observe(labels, (performance.now() - started) / 1000);
      }
    };
  }
}
