/**
 * RFC 9457 problem details. Every error the service sends goes through `problem()`, so clients can
 * rely on `application/problem+json` with `type`, `title`, `status`, `detail` and our `requestId`.
 */
import type { Context } from 'hono';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Problem types specific to this service; plain HTTP errors use `about:blank` as RFC 9457 advises. */
export const ProblemType = {
  validation: 'urn:kreg:problem:validation-failed',
  usernameTaken: 'urn:kreg:problem:username-taken',
  invalidCredentials: 'urn:kreg:problem:invalid-credentials',
  rateLimited: 'urn:kreg:problem:rate-limited',
  overloaded: 'urn:kreg:problem:overloaded',
  notReady: 'urn:kreg:problem:not-ready',
  databaseUnavailable: 'urn:kreg:problem:database-unavailable',
  databaseRefused: 'urn:kreg:problem:database-refused',
  unauthenticated: 'urn:kreg:problem:unauthenticated',
} as const;

export interface FieldError {
  /** JSON Pointer (RFC 6901) into the request body, as a URI fragment: "#/username". */
  pointer: string;
  code: string;
  detail: string;
}

export interface ProblemInit {
  status: number;
  title: string;
  detail: string;
  type?: string;
  errors?: FieldError[];
  headers?: Record<string, string>;
}

export function problem(c: Context, init: ProblemInit): Response {
  const body: Record<string, unknown> = {
    type: init.type ?? 'about:blank',
    title: init.title,
    status: init.status,
    detail: init.detail,
    instance: c.req.path,
  };
  const requestId = c.get('requestId' as never) as string | undefined;
  if (requestId) body.requestId = requestId;
  if (init.errors) body.errors = init.errors;
  // Through the context, so the headers middlewares prepared (request id, security headers) are
  // part of it; a bare Response returned by a handler would replace them.
  return c.body(JSON.stringify(body), init.status as never, { 'content-type': PROBLEM_CONTENT_TYPE, ...init.headers });
}
