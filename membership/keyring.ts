// The gossip keyring: list, install, use (make primary) and remove memberlist's AES keys, changed in place so every reader sees the change at once.

import { NodemeshError } from '../lib/errors.js';

/** AES-128, AES-192 and AES-256. */
export const GOSSIP_KEY_SIZES = [16, 24, 32];

export interface KeyringEntry {
  /** The key, base64. */
  key: string;
  /** Whether this key encrypts what we send (every installed key decrypts). */
  primary: boolean;
}

const badKey = (what: string) => new NodemeshError('KEYRING_BAD_KEY', `${what}: make a key with \`nodemesh keygen\``, 400);

/** A gossip key from its base64 text (standard alphabet, padded, as `nodemesh keygen` prints it). The text is never echoed: it may be a key. */
export function parseGossipKey(text: string): Buffer {
  if (text === '') throw badKey('Key is empty: pass a base64 gossip key');
  const key = Buffer.from(text, 'base64');
  // Node's decoder skips what it cannot read; a round trip tells a real base64 text from a lenient reading of one.
  if (key.toString('base64') !== text) throw badKey('Key is not valid base64 (standard alphabet with = padding, no spaces or newlines)');
  if (!GOSSIP_KEY_SIZES.includes(key.length)) {
    throw badKey(`Key is ${key.length} bytes after base64 decoding, but a gossip key must be 16, 24 or 32 bytes (AES-128, AES-192 or AES-256)`);
  }
  return key;
}

export class GossipKeyring {
  /**
   * `keys` is the very array memberlist seals with (its first key) and opens with (every key), also held by its
   * stream readers: it is changed in place, never replaced. `persist` gets the next list before it takes effect;
   * when it throws, nothing changes.
   */
  constructor(private readonly keys: Buffer[], private readonly persist: (next: Buffer[]) => void = () => undefined) {}

  /** False when the agent gossips in plaintext: it has no keyring, and one cannot be started at runtime. */
  get enabled(): boolean {
    return this.keys.length > 0;
  }

  list(): KeyringEntry[] {
    this.requireEnabled();
    return this.keys.map((k, i) => ({ key: k.toString('base64'), primary: i === 0 }));
  }

  /** Adds a key for decryption (the primary key is unchanged); false when it was installed already. */
  install(text: string): boolean {
    this.requireEnabled();
    const key = parseGossipKey(text);
    if (this.indexOf(key) >= 0) return false;
    this.commit([...this.keys, key]);
    return true;
  }

  /** Makes an installed key the one we encrypt with; false when it was primary already. */
  use(text: string): boolean {
    this.requireEnabled();
    const i = this.indexOf(parseGossipKey(text));
    if (i < 0) {
      throw new NodemeshError('KEYRING_KEY_NOT_INSTALLED', 'Requested key is not in the keyring: install it first (`nodemesh keyring install <key>`, on every agent), then use it', 400);
    }
    if (i === 0) return false;
    this.commit([this.keys[i], ...this.keys.filter((_, j) => j !== i)]);
    return true;
  }

  /** Removes a key that is not primary; false when it was not installed (as memberlist, a no-op). */
  remove(text: string): boolean {
    this.requireEnabled();
    const i = this.indexOf(parseGossipKey(text));
    if (i === 0) {
      throw new NodemeshError('KEYRING_REMOVE_PRIMARY', 'Removing the primary key is not allowed: make another installed key primary first (`nodemesh keyring use <key>`, on every agent), then remove this one', 400);
    }
    if (i < 0) return false;
    this.commit(this.keys.filter((_, j) => j !== i));
    return true;
  }

  private indexOf(key: Buffer): number {
    return this.keys.findIndex((k) => k.equals(key));
  }

  private requireEnabled(): void {
    if (this.enabled) return;
    throw new NodemeshError('KEYRING_NOT_ENABLED',
      'Gossip encryption is not enabled on this agent, so it has no keyring, and enabling encryption at runtime is not supported: set `encrypt` in the config (make a key with `nodemesh keygen`; every agent of the pool needs it) and restart the agent', 400);
  }

  private commit(next: Buffer[]): void {
    this.persist(next);
    this.keys.splice(0, this.keys.length, ...next);
  }
}
