// Consul's `?node-meta=key:value` (repeatable): only nodes whose meta has every pair; a malformed pair is a 400.

import { NodemeshError } from '../lib/errors.js';
import type { NodeEntry } from '../model/catalog-types.js';

/** The filter the query asks for, or undefined when it asks for none. */
export function nodeMetaFilter(query: URLSearchParams): ((n: NodeEntry) => boolean) | undefined {
  const pairs = query.getAll('node-meta').map((p) => {
    const at = p.indexOf(':');
    if (at <= 0) throw new NodemeshError('API_BAD_QUERY', `Invalid node-meta filter ${JSON.stringify(p)}: want key:value`, 400);
    return [p.slice(0, at), p.slice(at + 1)] as const;
  });
  if (!pairs.length) return undefined;
  return (n) => pairs.every(([k, v]) => n.info.Meta?.[k] === v);
}
