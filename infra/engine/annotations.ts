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

/**
 * `kreg.dev/adopt: <Kind>/<namespace>/<name>` on an existing object: its owner hands it to the set
 * whose ApplySet parent is named (for the operator, `RegistrationService/<namespace>/<name>`).
 * Without it kreg never applies, merges, prunes or deletes an object it did not create. It sits on
 * the existing object, so the consent is given by whoever controls that object, not by whoever
 * writes the set that wants it.
 */
export const ADOPT_ANNOTATION = 'kreg.dev/adopt';

/**
 * `kreg.dev/generate: <key>[,<key>…]` on a Secret: kreg creates the Secret with a random value for
 * each key (192 bits, base64url) when it does not exist, and never writes it again, so credentials
 * are made in the cluster and live nowhere else: not in git, not in the synthesized manifests, not
 * in kreg's revision history. Combine with `kreg.dev/prune: never` for data that must outlive a
 * release (a database's password).
 */
export const GENERATE_ANNOTATION = 'kreg.dev/generate';

/**
 * `kreg.dev/phase: <phase>` on an object: apply it in that phase instead of its kind's (see PHASES
 * in plan.ts). `backends` is the one made for it: workloads the set's Jobs need, such as the
 * database a migration Job runs against, applied and waited for before the Jobs.
 */
export const PHASE_ANNOTATION = 'kreg.dev/phase';
