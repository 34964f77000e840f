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

/**
 * Letters, marks and digits a username still may not contain: the invisible ones (Hangul fillers,
 * variation selectors, the combining grapheme joiner) and those whose NFKC form leaves the allowed
 * set ("¼" becomes "1⁄4", "ŀ" becomes "l·", some Arabic forms gain a space). Spelled out as ranges,
 * not computed, so the rule fits in a JSON Schema pattern; a unit test recomputes both lists from
 * the running Node's Unicode data and fails when a Unicode update changes them.
 */
export const USERNAME_EXCLUDED: ReadonlyArray<readonly [number, number]> = [
  [0xbc, 0xbe], [0x13f, 0x140], [0x34f, 0x34f], [0x37a, 0x37a], [0x115f, 0x1160], [0x17b4, 0x17b5],
  [0x180b, 0x180d], [0x180f, 0x180f], [0x2150, 0x215f], [0x2189, 0x2189], [0x2474, 0x2487],
  [0x3164, 0x3164], [0x3220, 0x3229], [0xfc5e, 0xfc63], [0xfdfa, 0xfdfb], [0xfe00, 0xfe0f],
  [0xfe70, 0xfe70], [0xfe72, 0xfe72], [0xfe74, 0xfe74], [0xfe76, 0xfe76], [0xfe78, 0xfe78],
  [0xfe7a, 0xfe7a], [0xfe7c, 0xfe7c], [0xfe7e, 0xfe7e], [0xffa0, 0xffa0], [0x1f101, 0x1f10a],
  [0xe0100, 0xe01ef],
];

/** Letters that cannot start a name because their NFKC form starts with a mark (Thai "ำ", "ﾞ"). */
export const USERNAME_EXCLUDED_FIRST: ReadonlyArray<readonly [number, number]> = [
  [0xe33, 0xe33], [0xeb3, 0xeb3], [0xff9e, 0xff9f],
];

// \uXXXX is the one escape ECMAScript, Python and Rust regexes all read; astral characters (past
// U+FFFF) have no such shared escape, so they stand in the pattern as themselves.
const patternChar = (cp: number) =>
  cp > 0xffff ? String.fromCodePoint(cp) : `\\u${cp.toString(16).toUpperCase().padStart(4, '0')}`;
const characterClass = (ranges: ReadonlyArray<readonly [number, number]>) =>
  `[${ranges.map(([from, to]) => (from === to ? patternChar(from) : `${patternChar(from)}-${patternChar(to)}`)).join('')}]`;

/**
 * The whole username rule but its length, as an ECMAScript pattern (Unicode mode). The OpenAPI
 * document publishes this exact source, so a client or a fuzzer checks what the server checks:
 * a letter or digit first, then letters, marks, digits, ".", "_" and "-", none of the excluded.
 */
export const USERNAME_PATTERN_SOURCE =
  `^(?!.*${characterClass(USERNAME_EXCLUDED)})(?!${characterClass(USERNAME_EXCLUDED_FIRST)})` +
  '[\\p{L}\\p{N}][\\p{L}\\p{M}\\p{N}._-]*$';
const USERNAME_PATTERN = new RegExp(USERNAME_PATTERN_SOURCE, 'u');

/**
 * Display form: NFKC-normalized (fullwidth "Ａｌｉｃｅ" becomes "Alice"). The rules above hold for the
 * name as sent; the pattern's exclusions make sure its NFKC form still has the same shape.
 */
export function displayUsername(raw: string): string {
  return raw.normalize('NFKC');
}

/** Uniqueness key: the display form, case-folded. "Alice", "ALICE" and "Ａｌｉｃｅ" share one. */
export function canonicalUsername(raw: string): string {
  return displayUsername(raw).toLowerCase().normalize('NFKC');
}

/** Length in Unicode code points, as JSON Schema's minLength/maxLength count it ("😀" is one). */
export const codePoints = (s: string) => [...s].length;

export function checkUsername(raw: string): FieldProblem | undefined {
  const problem = (code: string, detail: string): FieldProblem => ({ field: 'username', code, detail });
  if (INVISIBLE_OR_BIDI.test(raw)) {
    return problem('invisible_characters', 'must not contain invisible or text-direction characters');
  }
  if (CONTROL.test(raw)) return problem('control_characters', 'must not contain control characters');
  const length = codePoints(raw);
  if (length < USERNAME_MIN || length > USERNAME_MAX) {
    return problem('length', `must be ${USERNAME_MIN} to ${USERNAME_MAX} characters long (got ${length})`);
  }
  if (!USERNAME_PATTERN.test(raw)) {
    return problem(
      'characters',
      'may contain only letters, digits, ".", "_" and "-" (no spaces, not even around it), and must start with a letter or digit',
    );
  }
  return undefined;
}

/**
 * Passwords are NFKC-normalized before hashing (as NIST SP 800-63B suggests) so the same password
 * typed on different keyboards or input methods matches. Nothing else is changed: no trimming,
 * no truncation, every character allowed. Its length rule applies to the password as sent.
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

/** The list itself, for the contract test's fuzzer (it must not offer one as a valid password). */
export function commonPasswordList(): ReadonlySet<string> {
  isCommonPassword('');
  return commonPasswords!;
}

export function commonPasswordCount(): number {
  return commonPasswordList().size;
}

export function checkPassword(raw: string, username: string): FieldProblem | undefined {
  const problem = (code: string, detail: string): FieldProblem => ({ field: 'password', code, detail });
  // Counted as sent, like the username, so the published minLength/maxLength are the rule.
  const length = codePoints(raw);
  const password = normalizePassword(raw);
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
