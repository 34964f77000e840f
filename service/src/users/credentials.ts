/**
 * Username and password rules. Pure functions, no I/O, so they are cheap to test exhaustively.
 */
import { dictionary } from '@zxcvbn-ts/language-common';

export const USERNAME_MIN = 3;
export const USERNAME_MAX = 32;
export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 128;

export interface FieldProblem {
  field: 'username' | 'password';
  code: string;
  detail: string;
}

// Zero-width, joiners, soft hyphen, BOM, … and every bidi control (LRE/RLO/LRI/…): characters that
// make two different stored names look identical or make a name render reversed.
const INVISIBLE_OR_BIDI = /[\p{Default_Ignorable_Code_Point}\p{Bidi_Control}]/u;
const CONTROL = /\p{Cc}/u;
// Letters (with their combining marks), digits and . _ - ; the first character is a letter or digit.
const USERNAME_SHAPE = /^[\p{L}\p{N}][\p{L}\p{M}\p{N}._-]*$/u;

/** Display form: trimmed and NFKC-normalized (fullwidth "Ａｌｉｃｅ" becomes "Alice"). */
export function displayUsername(raw: string): string {
  return raw.trim().normalize('NFKC');
}

/** Uniqueness key: the display form, case-folded. "Alice", "ALICE" and "Ａｌｉｃｅ" share one. */
export function canonicalUsername(raw: string): string {
  return displayUsername(raw).toLowerCase().normalize('NFKC');
}

const codePoints = (s: string) => [...s].length;

export function checkUsername(raw: string): FieldProblem | undefined {
  const problem = (code: string, detail: string): FieldProblem => ({ field: 'username', code, detail });
  if (INVISIBLE_OR_BIDI.test(raw)) {
    return problem('invisible_characters', 'must not contain invisible or text-direction characters');
  }
  if (CONTROL.test(raw)) return problem('control_characters', 'must not contain control characters');
  const name = displayUsername(raw);
  const length = codePoints(name);
  if (length < USERNAME_MIN || length > USERNAME_MAX) {
    return problem('length', `must be ${USERNAME_MIN} to ${USERNAME_MAX} characters long (got ${length})`);
  }
  if (!USERNAME_SHAPE.test(name)) {
    return problem(
      'characters',
      'may contain only letters, digits, ".", "_" and "-", and must start with a letter or digit',
    );
  }
  return undefined;
}

/**
 * Passwords are NFKC-normalized before hashing (as NIST SP 800-63B suggests) so the same password
 * typed on different keyboards or input methods matches. Nothing else is changed: no trimming,
 * no truncation, every character allowed.
 */
export function normalizePassword(raw: string): string {
  return raw.normalize('NFKC');
}

let commonPasswords: Set<string> | undefined;

/**
 * Common passwords from the zxcvbn-ts project (@zxcvbn-ts/language-common, "passwords-common":
 * the most frequent passwords of public breach corpora). Only entries long enough to pass the
 * length rule matter; they are compared case-insensitively.
 */
export function isCommonPassword(password: string): boolean {
  commonPasswords ??= new Set(dictionary['passwords-common'].filter((p) => p.length >= PASSWORD_MIN));
  return commonPasswords.has(password.toLowerCase());
}

export function commonPasswordCount(): number {
  isCommonPassword('');
  return commonPasswords!.size;
}

export function checkPassword(raw: string, username: string): FieldProblem | undefined {
  const problem = (code: string, detail: string): FieldProblem => ({ field: 'password', code, detail });
  const password = normalizePassword(raw);
  const length = codePoints(password);
  if (length < PASSWORD_MIN || length > PASSWORD_MAX) {
    return problem('length', `must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters long (got ${length})`);
  }
  if (password.toLowerCase().normalize('NFKC') === canonicalUsername(username)) {
    return problem('same_as_username', 'must not be the same as the username');
  }
  if (isCommonPassword(password)) {
    return problem('too_common', 'is one of the most commonly used passwords; choose another');
  }
  return undefined;
}
