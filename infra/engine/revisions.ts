/**
 * Revision history: every deploy that changed something is recorded as a Secret next to the
 * ApplySet parent — `<set>.v<N>`, type `kreg.dev/revision`, holding the gzipped objects that were
 * applied. `kreg rollback --to N` re-applies one; the newest `HISTORY_LIMIT` are kept.
 * Secrets rather than ConfigMaps because manifests may hold Secret data.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { KubeApiError, type KubeApi } from './client.js';
import type { ApplySetRef } from './inventory.js';
import type { KubeObject } from './types.js';

export const HISTORY_LIMIT = 10;
export const REVISION_TYPE = 'kreg.dev/revision';
const SET_LABEL = 'kreg.dev/applyset';

export type RevisionStatus = 'deployed' | 'failed' | 'superseded';

export interface Revision {
  number: number;
  status: RevisionStatus;
  deployedAt: string;
  description: string;
  digest: string;
  objects: KubeObject[];
}

export function revisionName(set: ApplySetRef, n: number): string {
  return `${set.name}.v${n}`;
}

export function revisionObject(set: ApplySetRef, rev: Revision): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: revisionName(set, rev.number),
      namespace: set.namespace,
      labels: { [SET_LABEL]: set.name, 'kreg.dev/revision': String(rev.number), 'app.kubernetes.io/managed-by': 'kreg' },
      annotations: {
        'kreg.dev/status': rev.status,
        'kreg.dev/deployed-at': rev.deployedAt,
        'kreg.dev/description': rev.description,
        'kreg.dev/digest': rev.digest,
      },
    },
    type: REVISION_TYPE,
    data: { objects: gzipSync(JSON.stringify(rev.objects)).toString('base64') },
  };
}

export function parseRevision(secret: KubeObject): Revision {
  const a = secret.metadata.annotations ?? {};
  const raw = (secret.data as Record<string, string> | undefined)?.objects;
  return {
    number: Number(secret.metadata.labels?.['kreg.dev/revision']),
    status: (a['kreg.dev/status'] as RevisionStatus) ?? 'deployed',
    deployedAt: a['kreg.dev/deployed-at'] ?? '',
    description: a['kreg.dev/description'] ?? '',
    digest: a['kreg.dev/digest'] ?? '',
    objects: raw ? (JSON.parse(gunzipSync(Buffer.from(raw, 'base64')).toString('utf8')) as KubeObject[]) : [],
  };
}

/** All recorded revisions of a set, oldest first. */
export async function listRevisions(client: Pick<KubeApi, 'list'>, set: ApplySetRef): Promise<Revision[]> {
  let items: KubeObject[];
  try {
    items = await client.list('v1', 'Secret', { namespace: set.namespace, labelSelector: `${SET_LABEL}=${set.name}` });
  } catch (err) {
    if ((err as { status?: number }).status === 404) return [];
    throw err;
  }
  return items
    .filter((s) => s.type === REVISION_TYPE)
    .map(parseRevision)
    .sort((a, b) => a.number - b.number);
}

/**
 * Records a revision under the next free number above `previous` and every recorded one, marks the
 * previous deployed one superseded, and trims history; returns the number used. The revision is
 * created, never overwritten: if another writer takes the same number first (409 AlreadyExists),
 * the next number is tried, so two concurrent runs cannot record over each other.
 */
export async function recordRevision(
  client: KubeApi,
  set: ApplySetRef,
  draft: Omit<Revision, 'number'>,
  previous: number,
  fieldManager: string,
): Promise<number> {
  let history = await listRevisions(client, set);
  let number = Math.max(previous, ...history.map((h) => h.number), 0) + 1;
  for (let attempt = 0; ; attempt++) {
    try {
      await client.create(revisionObject(set, { ...draft, number }));
      break;
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 409) || attempt >= 4) throw err;
      history = await listRevisions(client, set);
      number = Math.max(number, ...history.map((h) => h.number)) + 1;
    }
  }
  const rev: Revision = { ...draft, number };
  if (rev.status === 'deployed') {
    for (const old of history.filter((h) => h.status === 'deployed' && h.number !== number)) {
      await client.apply(revisionObject(set, { ...old, status: 'superseded' }), { fieldManager, force: true });
    }
  }
  const all = [...history.filter((h) => h.number !== number), rev].sort((a, b) => a.number - b.number);
  for (const old of all.slice(0, Math.max(0, all.length - HISTORY_LIMIT))) {
    await client.delete({ apiVersion: 'v1', kind: 'Secret', namespace: set.namespace, name: revisionName(set, old.number) });
  }
  return number;
}
