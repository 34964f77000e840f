/**
 * Scrubbing of secrets from text that is about to be logged, shown in an error or sent in a
 * response. Dependency-free: configuration validation uses it too, and the charts load that.
 */

/** A PHC-encoded argon2 hash anywhere in a string (the `$argon2id$v=19$m=…$salt$hash` form). */
const PHC_HASH = /\$argon2(?:id|i|d)\$[^\s"'`,;)\]}]*/g;

/**
 * The password of a URL's userinfo (`postgres://kreg:<password>@db/kreg`). Greedy up to the last
 * `@` before a space or a quote: a password with an unencoded `@` is still covered, and taking too
 * much of a malformed URL is better than leaving some of a password.
 */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:/@"'`]*):[^\s"'`]*@/gi;

/** Replaces every argon2 hash in `text`; cheap when there is none (one `includes`). */
export function redactHashes(text: string): string {
  return text.includes('$argon2') ? text.replace(PHC_HASH, '[redacted hash]') : text;
}

/** Replaces the password of every URL in `text` (`scheme://user:[redacted]@host`). */
export function redactUrlPasswords(text: string): string {
  return text.includes('://') && text.includes('@') ? text.replace(URL_PASSWORD, '$1:[redacted]@') : text;
}

/** A session token (service/src/sessions/service.ts): its prefix is what makes it findable. */
const SESSION_TOKEN = /kreg_st_[A-Za-z0-9_-]*/g;

/** Replaces every session token in `text`; cheap when there is none. */
export function redactTokens(text: string): string {
  return text.includes('kreg_st_') ? text.replace(SESSION_TOKEN, 'kreg_st_[redacted]') : text;
}

/** All of the above. */
export function redactSecrets(text: string): string {
  return redactTokens(redactUrlPasswords(redactHashes(text)));
}
