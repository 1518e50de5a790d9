// Numbers as the UI shows them: rates, percentages, latencies, sizes; a dash for nothing measured.

export const rate = (n: number) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
export const percent = (r: number | null) => (r === null ? '–' : `${(r * 100).toFixed(r === 1 ? 0 : 2)}%`);
export const ms = (n: number | null) => (n === null ? '–' : n >= 100 ? `${n.toFixed(0)} ms` : `${n.toFixed(1)} ms`);

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** The colour class of an edge: healthy, degraded, failing, or no requests to judge by. */
export function health(successRate: number | null, denied: number): 'ok' | 'warn' | 'bad' | 'idle' {
  if (successRate === null) return denied > 0 ? 'bad' : 'idle';
  return successRate >= 0.99 ? 'ok' : successRate >= 0.95 ? 'warn' : 'bad';
}
