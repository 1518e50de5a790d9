// The project's error type: every error the agent reports carries a stable code.

import type { ErrorCode } from './error-codes.js';

export type { ErrorCode } from './error-codes.js';

export class NodemeshError extends Error {
  /** Registered in lib/error-codes.ts: the compiler refuses an unregistered code. */
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, message: string, status = 500) {
    super(message);
    this.name = 'NodemeshError';
    this.code = code;
    this.status = status;
  }
}

export const isNodemeshError = (e: unknown): e is NodemeshError => e instanceof NodemeshError;

/** hashicorp/go-multierror's text, which Consul returns verbatim for validation errors. */
export function multiError(errs: string[]): string {
  return `${errs.length} error${errs.length === 1 ? '' : 's'} occurred:\n${errs.map((e) => `\t* ${e}`).join('\n')}\n\n`;
}
