/**
 * `kreg deploy|diff -f <file|dir|->`: any Kubernetes YAML or JSON, for the full engine (validate,
 * phased apply, readiness with evidence, ApplySet prune, revisions) without this repository's
 * environments. A directory means its *.yaml, *.yml and *.json files, in name order, not recursing
 * (as `kubectl apply -f <dir>` does); `-` reads standard input. `kind: List` documents are
 * flattened. Namespaced objects without a namespace go to the set's (the engine defaults them).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { KubeObject } from '../engine/index.js';

export class ManifestError extends Error {}

export function readManifestSources(path: string, stdin: () => string): Array<{ name: string; text: string }> {
  if (path === '-') return [{ name: '<stdin>', text: stdin() }];
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw new ManifestError(`-f ${path}: no such file or directory`);
  }
  if (!stat.isDirectory()) return [{ name: path, text: readFileSync(path, 'utf8') }];
  const files = readdirSync(path)
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .sort();
  if (files.length === 0) throw new ManifestError(`-f ${path}: the directory has no .yaml, .yml or .json files`);
  return files.map((f) => ({ name: join(path, f), text: readFileSync(join(path, f), 'utf8') }));
}

/** Every object in the sources; an unparsable document or a non-object names its file and position. */
export function parseManifests(sources: Array<{ name: string; text: string }>): KubeObject[] {
  const objects: KubeObject[] = [];
  for (const { name, text } of sources) {
    parseAllDocuments(text).forEach((doc, index) => {
      const where = `${name}, document ${index + 1}`;
      if (doc.errors.length) throw new ManifestError(`${where}: ${doc.errors[0]!.message.split('\n')[0]}`);
      const value = doc.toJS() as unknown;
      if (value === null || value === undefined) return; // an empty document (a trailing ---)
      const items = isObject(value) && value.kind === 'List' && Array.isArray(value.items) ? (value.items as unknown[]) : [value];
      for (const item of items) {
        if (!isObject(item) || typeof item.apiVersion !== 'string' || typeof item.kind !== 'string' || !isObject(item.metadata) || typeof item.metadata.name !== 'string') {
          throw new ManifestError(`${where}: not a Kubernetes object (it needs apiVersion, kind and metadata.name)`);
        }
        objects.push(item as unknown as KubeObject);
      }
    });
  }
  if (objects.length === 0) throw new ManifestError(`no objects in ${sources.map((s) => s.name).join(', ')}`);
  return objects;
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * `--app "<cmd>"`: runs a cdk8s app as `cdk8s synth` does — through the shell, with CDK8S_OUTDIR set
 * to an empty folder — and returns the objects it wrote. The app's own output goes to stderr, so
 * `--output json` stays clean. A failing app, or one that writes nothing, is a ManifestError.
 */
export async function appManifests(command: string, environ: NodeJS.ProcessEnv, stderr: NodeJS.WritableStream): Promise<KubeObject[]> {
  const outdir = mkdtempSync(join(tmpdir(), 'kreg-app-'));
  try {
    const { code, signal, tail } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; tail: string }>((resolve, reject) => {
      const child = spawn(command, { shell: true, env: { ...environ, CDK8S_OUTDIR: outdir }, stdio: ['ignore', 'pipe', 'pipe'] });
      let tail = '';
      const keep = (d: Buffer) => {
        stderr.write(d);
        tail = (tail + d.toString()).slice(-2000);
      };
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, tail }));
    });
    if (code !== 0) {
      const last = tail.trim().split('\n').pop() ?? '';
      throw new ManifestError(`the app "${command}" ${signal ? `was killed by ${signal}` : `exited ${code}`}${last ? `: ${last}` : ''}`);
    }
    if (!readdirSync(outdir).some((f) => /\.(ya?ml|json)$/.test(f))) {
      throw new ManifestError(`the app "${command}" wrote no manifests into CDK8S_OUTDIR (does it call app.synth(), and leave outdir to CDK8S_OUTDIR?)`);
    }
    return parseManifests(readManifestSources(outdir, () => ''));
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}
