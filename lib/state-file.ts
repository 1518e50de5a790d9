// Durable JSON state: atomic write-and-rename with fsync, and group commit of concurrent saves.
//
// Why write-and-rename rather than an embedded database: the state this agent owns is small (its own
// node's services and checks, some kilobytes) and is always written whole. rename(2) over the old file
// is atomic on POSIX filesystems, so a reader after a crash or `kill -9` sees either the previous
// complete file or the new complete file — never a torn one. fsync of the temp file before the rename
// and of the directory after it makes the new file survive a power loss too.

import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { NodemeshError } from './errors.js';

export class StateFile<T> {
  private writing: Promise<void> | null = null;
  private pending: { promise: Promise<void> } | null = null;

  constructor(readonly path: string, private readonly snapshot: () => T) {}

  /** Reads the last saved state; undefined when there is none yet. */
  async load(): Promise<T | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new NodemeshError('STATE_CORRUPT', `state file ${this.path} is not valid JSON (${(e as Error).message}); move it away to start empty`);
    }
  }

  /**
   * Resolves once a snapshot taken at or after this call is on disk. Saves that arrive while a write
   * is in flight share the next write (group commit), so N concurrent requests cost two writes, not N.
   */
  save(): Promise<void> {
    if (!this.writing) {
      this.writing = this.writeNow().finally(() => { this.writing = null; });
      return this.writing;
    }
    if (!this.pending) {
      const promise = this.writing.catch(() => undefined).then(() => {
        this.pending = null;
        return this.save();
      });
      this.pending = { promise };
    }
    return this.pending.promise;
  }

  /** Waits for every queued save. */
  async flush(): Promise<void> {
    while (this.writing || this.pending) await (this.pending?.promise ?? this.writing)?.catch(() => undefined);
  }

  private async writeNow(): Promise<void> {
    const data = JSON.stringify(this.snapshot());
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.tmp`);
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, this.path);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    const dir = await open(dirname(this.path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
