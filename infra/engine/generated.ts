/**
 * Secrets whose values kreg generates (see GENERATE_ANNOTATION): filled with random values when a
 * run prepares them, applied only if they do not exist yet, and recorded without their values.
 */
import { randomBytes } from 'node:crypto';
import { GENERATE_ANNOTATION } from './annotations.js';
import type { KubeObject } from './types.js';

/** The keys kreg generates for this object, or none. */
export function generatedKeys(obj: KubeObject): string[] {
  if (obj.apiVersion !== 'v1' || obj.kind !== 'Secret') return [];
  const value = obj.metadata.annotations?.[GENERATE_ANNOTATION];
  return value ? value.split(',').map((k) => k.trim()).filter(Boolean) : [];
}

export function isGenerated(obj: KubeObject): boolean {
  return generatedKeys(obj).length > 0;
}

/** A copy with a fresh random value for every generated key (base64 `data`, as prepared Secrets carry). */
export function withGeneratedValues(obj: KubeObject): KubeObject {
  const keys = generatedKeys(obj);
  if (!keys.length) return obj;
  const data: Record<string, string> = { ...(obj.data ?? {}) };
  for (const key of keys) data[key] = Buffer.from(randomBytes(24).toString('base64url'), 'utf8').toString('base64');
  return { ...obj, data };
}

/** A copy without the generated values: what may be recorded or shown. */
export function withoutGeneratedValues(obj: KubeObject): KubeObject {
  const keys = generatedKeys(obj);
  if (!keys.length || !obj.data) return obj;
  const data = { ...obj.data };
  for (const key of keys) delete data[key];
  const { data: _data, ...rest } = obj;
  return Object.keys(data).length ? { ...rest, data } : rest;
}
