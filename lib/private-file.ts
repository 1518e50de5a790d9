// Files only their owner may read (keys, keyrings, retired roots): written whole, mode 0600 even over a looser file.

import { renameSync, rmSync, writeFileSync } from 'node:fs';

/** Writes a file only the owner can read, even if it existed with looser bits. */
export function writePrivate(path: string, data: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  writeFileSync(tmp, data, { mode: 0o600, flag: 'wx' });
  renameSync(tmp, path);
}
