/**
 * Request and response schemas. The same objects validate requests and generate /openapi.json,
 * so the document cannot drift from what the service enforces.
 */
import { z } from '@hono/zod-openapi';
import {
  PASSWORD_MAX,
  PASSWORD_MIN,
  USERNAME_MAX,
  USERNAME_MIN,
  USERNAME_PATTERN_SOURCE,
  checkPassword,
  checkUsername,
  codePoints,
} from './credentials.js';

/**
 * A string whose length limits are counted in Unicode code points, as JSON Schema's minLength and
 * maxLength are (zod's own .min/.max count UTF-16 units, which would make "😀" two characters long).
 */
const sizedString = (min: number, max: number) =>
  z
    .string()
    .superRefine((value, ctx) => {
      const length = codePoints(value);
      if (length < min || length > max) {
        ctx.addIssue({ code: 'custom', message: `must be ${min} to ${max} characters long (got ${length})`, params: { code: 'length' } });
      }
    })
    .openapi({ minLength: min, maxLength: max });

// The schema states the whole rule that JSON Schema can state; what it cannot (the common-password
// list, "not the username", uniqueness) is enforced by the refinement below and documented with
// its problem code on the 400 and 409 responses.
const usernameField = z.string().openapi({
  description:
    `${USERNAME_MIN}–${USERNAME_MAX} characters (code points, as sent): letters, marks, digits, ".", "_", "-", ` +
    'starting with a letter or digit; no spaces, not even around it. Stored NFKC-normalized ("Ａｌｉｃｅ" is ' +
    'stored as "Alice") and unique case-insensitively ("Alice" and "alice" are the same user). Invisible ' +
    'characters, and the few letters whose NFKC form is not a letter (such as "¼"), are excluded by the pattern.',
  minLength: USERNAME_MIN,
  maxLength: USERNAME_MAX,
  pattern: USERNAME_PATTERN_SOURCE,
  example: 'alice',
});

const passwordField = z.string().openapi({
  description:
    `${PASSWORD_MIN}–${PASSWORD_MAX} characters (code points, as sent), not the username (compared ` +
    'case-insensitively), not one of the most common passwords. Any character is allowed; nothing is ' +
    'trimmed or truncated. NFKC-normalized before hashing.',
  minLength: PASSWORD_MIN,
  maxLength: PASSWORD_MAX,
  example: 'correct horse battery staple',
  format: 'password',
});

export const RegisterRequest = z
  .strictObject({ username: usernameField, password: passwordField })
  .superRefine((value, ctx) => {
    const usernameProblem = checkUsername(value.username);
    if (usernameProblem) {
      ctx.addIssue({ code: 'custom', path: ['username'], message: usernameProblem.detail, params: { code: usernameProblem.code } });
    }
    const passwordProblem = checkPassword(value.password, value.username);
    if (passwordProblem) {
      ctx.addIssue({ code: 'custom', path: ['password'], message: passwordProblem.detail, params: { code: passwordProblem.code } });
    }
  })
  .openapi('RegisterRequest');

// Login accepts any strings of sane size: a username that could never have been registered is
// simply unknown (401), indistinguishable from a wrong password.
export const LoginRequest = z
  .strictObject({
    username: sizedString(1, 256).openapi({ example: 'alice' }),
    password: sizedString(1, 1024).openapi({ example: 'correct horse battery staple', format: 'password' }),
  })
  .openapi('LoginRequest');

export const User = z
  .object({
    id: z.uuid().openapi({ example: '0b5c3c1e-8d6f-4a55-9d0e-5f3f1a2b7c9d' }),
    username: z.string().openapi({ example: 'alice' }),
    createdAt: z.iso.datetime().openapi({ example: '2026-11-24T12:00:00.000Z' }),
  })
  .openapi('User');

export const IssuedSession = z
  .object({
    id: z.uuid(),
    token: z.string().regex(/^kreg_st_[A-Za-z0-9_-]{43}$/).openapi({
      description: 'The bearer token: send it as `Authorization: Bearer <token>`. Shown once; the service keeps only its SHA-256.',
      example: 'kreg_st_q3Xb0m5kq3l2Y0m1bH9z8c7v6u5t4s3r2q1p0o9n8m7',
    }),
    tokenType: z.literal('Bearer'),
    createdAt: z.iso.datetime(),
    expiresAt: z.iso.datetime().openapi({ description: 'The absolute end of the session; it is never extended.' }),
    idleTimeoutSeconds: z.number().int().openapi({ description: 'The session ends if it is not used for this long.' }),
  })
  .openapi('IssuedSession');

export const LoginResult = z
  .object({ id: z.uuid(), username: z.string(), session: IssuedSession })
  .openapi('LoginResult');

export const Whoami = z
  .object({
    user: z.object({ id: z.uuid(), username: z.string() }),
    session: z.object({
      id: z.uuid(),
      createdAt: z.iso.datetime(),
      expiresAt: z.iso.datetime(),
      idleExpiresAt: z.iso.datetime().openapi({ description: 'When the session ends if it is not used before.' }),
    }),
  })
  .openapi('Whoami');

/** Field problem codes a 400 can carry, with what each means; the OpenAPI document lists them per operation. */
export const FIELD_CODES = {
  invalid_type: 'a field is missing or not a string, or the body is not a JSON object',
  unknown_field: 'the body has a field the operation does not define',
  length: 'too short or too long (in code points, as sent)',
  characters: 'username: a character outside the pattern',
  invisible_characters: 'username: an invisible or text-direction character',
  control_characters: 'username: a control character',
  same_as_username: 'password: equal to the username, ignoring case',
  too_common: 'password: one of the most common passwords',
  invalid_format: 'a path parameter is not in its format (a user id is a UUID)',
  taken: 'username: already registered, ignoring case and width',
} as const;
export type FieldCode = keyof typeof FIELD_CODES;

/**
 * A problem+json body narrowed to the types (and field codes) one response can carry, so the
 * document says exactly what a client may receive and a response that says otherwise fails the
 * fuzzer's response-schema check.
 */
export function problemSchema(name: string, types: readonly [string, ...string[]], codes?: readonly [FieldCode, ...FieldCode[]]) {
  const fieldError = z.object({
    pointer: z.string().openapi({ example: '#/password' }),
    code: codes ? z.enum(codes) : z.string(),
    detail: z.string(),
  });
  const base = {
    type: z.enum(types).openapi({ example: types[0] }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string().optional(),
    requestId: z.string().optional(),
  };
  return (codes ? z.object({ ...base, errors: z.array(fieldError).optional() }) : z.object(base)).openapi(name);
}

/** The codes, each with its meaning, as a Markdown list for a response description. */
export function describeCodes(codes: readonly FieldCode[]): string {
  return codes.map((code) => `\n- \`${code}\`: ${FIELD_CODES[code]}`).join('');
}

export const UserIdParam = z.object({
  id: z.uuid().openapi({ param: { name: 'id', in: 'path' }, example: '0b5c3c1e-8d6f-4a55-9d0e-5f3f1a2b7c9d' }),
});
