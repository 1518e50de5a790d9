// Bounded polling for tests: retry an assertion until it holds or the time is up, never a timed assertion.

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() >= deadline) {
        throw new Error(`waitFor: condition still not met after ${timeoutMs} ms; last failure: ${(e as Error).message}`, { cause: e });
      }
    }
    await sleep(50);
  }
}
