/**
 * Annotations and labels kreg reads on the objects it deploys. Charts set them; the engine honours
 * them. They are part of kreg's public contract, so their names never change.
 */

/**
 * `kreg.dev/prune: never` on an object: once applied, kreg never deletes it — not when it leaves the
 * desired set (prune), not on `kreg destroy` unless asked to (`--include-kept`). For data that must
 * outlive its release, e.g. the embedded database's PersistentVolumeClaim.
 */
export const PRUNE_ANNOTATION = 'kreg.dev/prune';
export const PRUNE_NEVER = 'never';
