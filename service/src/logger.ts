import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines on stdout. Request bodies are never logged; the redaction list is a second line of
 * defence in case a future log call passes an object that carries credentials.
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
    },
    destination,
  );
}

/**
 * What is safe to log about an error: its class, code and message, never the object itself.
 * drizzle's errors embed the failed SQL *and its parameters* (a password hash) in `message`,
 * so for those only the underlying driver error is described.
 */
export function describeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { error: String(err) };
  const cause = (err as { cause?: unknown }).cause;
  if (err.name === 'DrizzleQueryError' && cause instanceof Error) {
    return { error: 'database query failed', cause: describeError(cause) };
  }
  const code = (err as { code?: unknown }).code;
  return {
    error: err.name,
    message: err.message,
    ...(code !== undefined ? { code } : {}),
    ...(err.stack ? { stack: err.stack.split('\n').slice(0, 8).join('\n') } : {}),
  };
}
