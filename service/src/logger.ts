import { DrizzleQueryError } from 'drizzle-orm/errors';
import { pino, type Logger } from 'pino';
import { redactSecrets } from './redact.js';
import { sourceMappedStack } from './stack.js';

export type { Logger };
export { redactHashes } from './redact.js';

/**
 * JSON lines on stdout. Request bodies are never logged; the redaction list and the hash scrub on
 * the serialized line (argon2 hashes, URL passwords) are further lines of defence in case a future
 * log call passes an object, or an error message, that carries credentials.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'kreg-registration' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ['password', '*.password', 'passwordHash', '*.passwordHash', 'authToken', '*.authToken', 'headers.authorization'],
        censor: '[redacted]',
      },
      hooks: { streamWrite: redactSecrets },
    },
    destination,
  );
}

/**
 * True for an error that carries a statement's parameters. drizzle wraps every failed query in a
 * DrizzleQueryError whose `message` (and so `stack`) quotes the SQL *with its parameters*: the
 * user id, the username and the password hash. Its `name` stays "Error" (drizzle-orm 0.45), so it
 * is recognised by class, and, should another layer wrap queries the same way, by its `params`.
 */
function carriesQueryParameters(err: Error): boolean {
  return err instanceof DrizzleQueryError || 'params' in err;
}

/**
 * What is safe to log about an error: its class, code, message and stack, and the same for its
 * causes — never the object itself, and for query errors only their cause (the driver's code and
 * message), never the statement or its parameters.
 */
export function describeError(err: unknown, depth = 0): Record<string, unknown> {
  if (!(err instanceof Error)) return { error: redactSecrets(String(err)) };
  const cause = (err as { cause?: unknown }).cause;
  const describedCause = cause !== undefined && depth < 3 ? { cause: describeError(cause, depth + 1) } : {};
  if (carriesQueryParameters(err)) return { error: 'database query failed', ...describedCause };
  const code = (err as { code?: unknown }).code;
  return {
    error: err.name,
    message: redactSecrets(err.message),
    ...(code !== undefined ? { code } : {}),
    ...(err.stack ? { stack: redactSecrets(sourceMappedStack(err.stack.split('\n').slice(0, 8).join('\n'))) } : {}),
    ...describedCause,
  };
}
