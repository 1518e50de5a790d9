// The project's error type: every error the agent reports carries a stable code.

export class NodemeshError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status = 500) {
    super(message);
    this.name = 'NodemeshError';
    this.code = code;
    this.status = status;
  }
}

export const isNodemeshError = (e: unknown): e is NodemeshError => e instanceof NodemeshError;
