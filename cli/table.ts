// Aligned text tables for the CLI, and the --format switch between them and JSON.

export type Format = 'table' | 'json';

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

/** Prints rows as a table, or `json` as JSON for scripts. */
export function output(format: Format, json: unknown, headers: string[], rows: (string | number)[][], empty: string): void {
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    return;
  }
  process.stdout.write(rows.length === 0 ? `${empty}\n` : `${table(headers, rows)}\n`);
}
