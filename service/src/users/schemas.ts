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
  checkPassword,
  checkUsername,
} from './credentials.js';

const usernameField = z.string().openapi({
  description:
    `${USERNAME_MIN}–${USERNAME_MAX} characters: letters, digits, ".", "_", "-", starting with a letter or digit. ` +
    'Trimmed and NFKC-normalized; unique case-insensitively ("Alice" and "alice" are the same user). ' +
    'Invisible and text-direction characters are rejected.',
  example: 'alice',
});

const passwordField = z.string().openapi({
  description:
    `${PASSWORD_MIN}–${PASSWORD_MAX} characters (Unicode code points, after NFKC), not the username, ` +
    'not one of the most common passwords. Any character is allowed; nothing is truncated.',
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
    username: z.string().min(1).max(256).openapi({ example: 'alice' }),
    password: z.string().min(1).max(1024).openapi({ example: 'correct horse battery staple', format: 'password' }),
  })
  .openapi('LoginRequest');

export const User = z
  .object({
    id: z.uuid().openapi({ example: '0b5c3c1e-8d6f-4a55-9d0e-5f3f1a2b7c9d' }),
    username: z.string().openapi({ example: 'alice' }),
    createdAt: z.iso.datetime().openapi({ example: '2026-11-24T12:00:00.000Z' }),
  })
  .openapi('User');

export const LoginResult = z
  .object({ id: z.uuid(), username: z.string() })
  .openapi('LoginResult');

export const Problem = z
  .object({
    type: z.string().openapi({ example: 'urn:kreg:problem:validation-failed' }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string().optional(),
    requestId: z.string().optional(),
    errors: z
      .array(z.object({ pointer: z.string().openapi({ example: '#/password' }), code: z.string(), detail: z.string() }))
      .optional(),
  })
  .openapi('Problem');

export const UserIdParam = z.object({
  id: z.uuid().openapi({ param: { name: 'id', in: 'path' }, example: '0b5c3c1e-8d6f-4a55-9d0e-5f3f1a2b7c9d' }),
});
