/**
 * `npm run bench:scale` — registrations/s through the Service with 1, 2 and 3 replicas over one
 * PostgreSQL on the local cluster, each against the machine's hashing bound measured in the same run
 * (argon2id with the service's parameters, one worker per core on the host, just before and just
 * after each phase; the phase is compared with the mean of the two), with p50/p99 latency, and the
 * time a rolling update of 3 replicas takes.
 *
 * The load comes from a pod in the cluster: BENCH_CONNECTIONS requests at a time (default 12), a
 * new connection each, so the Service spreads them; unique usernames, rate limits off. On a
 * 2-core node it is CPU that bounds the service: each pod may use one core (its limit), the
 * database and the load's own pod share the same two. Needs the local cluster (npm run cluster:up)
 * with the images loaded (npm run test:e2e's first steps, or test/cluster/load-image.sh).
 *
 * Environment: BENCH_SECONDS per phase (default 20), BENCH_IMAGE (default kreg/registration:dev).
 */
import { hash, type Algorithm } from '@node-rs/argon2';
import { availableParallelism } from 'node:os';
import { KubeClient } from '../../infra/engine/client.js';
import { deploy } from '../../infra/engine/deploy.js';
import { synth } from '../../infra/main.js';
import type { RegistrationSpecInput } from '../../infra/spec.js';
import { loadConfig } from '../../service/src/config.js';
import { deleteNamespace, KUBECONFIG, kubectl, runNodePod } from '../e2e/kube.js';

const NS = 'kreg-scale-bench';
const IMAGE = process.env.BENCH_IMAGE ?? 'kreg/registration:dev';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 12);
const CORES = availableParallelism();

async function hashingBound(seconds: number): Promise<number> {
  const { hash: params } = loadConfig({});
  const options = { algorithm: 2 as Algorithm, memoryCost: params.memoryKib, timeCost: params.iterations, parallelism: params.parallelism };
  let done = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: CORES }, async (_, w) => {
      for (let i = 0; performance.now() < deadline; i++) {
        await hash(`bench-${w}-${i}`, options);
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}

// Registers unique users for `seconds` (after 3 s of warm-up that is not counted), CONNECTIONS at
// a time, each on a new connection; prints {created, seconds, p50, p99, errors} as its last line.
const loadScript = (seconds: number) => `(async () => {
  const http = require('node:http');
  const body = (u) => JSON.stringify({ username: u, password: 'violet-otter-meadow-42' });
  const post = (u) => new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.request({ host: 'scale.${NS}.svc.cluster.local', port: 80, path: '/register', method: 'POST', agent: false,
      headers: { 'content-type': 'application/json' }, timeout: 10000 }, (res) => {
      res.resume(); res.on('end', () => resolve({ status: String(res.statusCode), ms: performance.now() - t0 }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: e.code || e.message, ms: performance.now() - t0 }));
    req.end(body(u));
  });
  const warmEnd = Date.now() + 3000, end = warmEnd + ${seconds * 1000};
  // Every load pod is PID 1: the start time tells one phase's usernames from another's.
  const runId = Date.now().toString(36);
  const latencies = []; const errors = {}; let created = 0; let n = 0;
  await Promise.all(Array.from({ length: ${CONNECTIONS} }, async (_, w) => {
    while (Date.now() < end) {
      const counted = Date.now() >= warmEnd;
      const r = await post('s' + runId + 'w' + w + 'n' + (n++));
      if (!counted || Date.now() > end) continue;
      if (r.status === '201') { created++; latencies.push(r.ms); } else errors[r.status] = (errors[r.status] || 0) + 1;
    }
  }));
  latencies.sort((a, b) => a - b);
  const at = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] || 0;
  console.log(JSON.stringify({ created, seconds: ${seconds}, p50: at(0.5), p99: at(0.99), errors }));
})().catch((e) => { console.error(e); process.exit(1); })`;

function spec(replicas: number, roll = 0): RegistrationSpecInput {
  return {
    image: IMAGE,
    replicas,
    database: { mode: 'postgres', server: { storage: '1Gi' } },
    settings: { RATE_LIMIT_REGISTER: '0', RATE_LIMIT_LOGIN: '0', HASH_QUEUE_LIMIT: String(256 + roll) },
  };
}

const client = await KubeClient.create({ kubeconfig: KUBECONFIG });
const apply = async (replicas: number, roll = 0) => {
  const t0 = performance.now();
  const report = await deploy(client, synth('scale', NS, spec(replicas, roll)), { set: { name: 'scale-bench', namespace: NS } }, {
    timeoutMs: 300_000,
    wait: true,
    prune: true,
    forceConflicts: false,
    description: `bench: ${replicas} replicas`,
  });
  if (!report.ok) throw new Error(`deploy of ${replicas} replicas failed: ${report.failure?.message}`);
  return (performance.now() - t0) / 1000;
};

interface Phase {
  replicas: number;
  rate: number;
  bound: number;
  p50: number;
  p99: number;
  errors: Record<string, number>;
}
const phases: Phase[] = [];
let rollout = 0;
try {
  await deleteNamespace(NS);
  await kubectl(['create', 'namespace', NS]);
  console.log(`deployed 1 replica and PostgreSQL in ${(await apply(1)).toFixed(1)} s`);
  let before = await hashingBound(3);
  for (const replicas of [1, 2, 3]) {
    if (replicas > 1) console.log(`scaled to ${replicas} replicas in ${(await apply(replicas)).toFixed(1)} s`);
    const out = await runNodePod(NS, IMAGE, `scale-load-${replicas}`, loadScript(SECONDS));
    const result = JSON.parse(out.trim().split('\n').pop()!) as { created: number; seconds: number; p50: number; p99: number; errors: Record<string, number> };
    const after = await hashingBound(3);
    const bound = (before + after) / 2;
    phases.push({ replicas, rate: result.created / result.seconds, bound, p50: result.p50, p99: result.p99, errors: result.errors });
    console.log(`${replicas} replica(s): ${(result.created / result.seconds).toFixed(1)} registrations/s; bound ${bound.toFixed(1)}/s; errors ${JSON.stringify(result.errors)}`);
    before = after;
  }
  // A changed setting (the hash queue's limit, one more) rolls every pod.
  rollout = await apply(3, 1);
  console.log(`rolling update of 3 replicas (a changed setting) to all ready: ${rollout.toFixed(1)} s`);
} finally {
  client.close();
  await deleteNamespace(NS);
}

console.log(`\nregistrations through the Service over one PostgreSQL, ${SECONDS} s per phase, ${CONNECTIONS} at a time (${new Date().toISOString()}):`);
console.log(`| replicas | registrations/s | hashing bound (${CORES} cores) | ratio | p50 | p99 | not 201 |`);
console.log('|---|---|---|---|---|---|---|');
for (const p of phases) {
  const errors = Object.entries(p.errors).map(([k, v]) => `${v} × ${k}`).join(', ') || 'none';
  console.log(`| ${p.replicas} | ${p.rate.toFixed(1)} | ${p.bound.toFixed(1)}/s | ${((p.rate / p.bound) * 100).toFixed(0)} % | ${Math.round(p.p50)} ms | ${Math.round(p.p99)} ms | ${errors} |`);
}
console.log(`\nrolling update of 3 replicas: ${rollout.toFixed(1)} s`);
