// Service-resolver subset filters: the part of Consul's filter language subsets use — Service.Meta / Service.Tags / Node.Meta selectors, ==, !=, contains, in, and, or, not.

import { NodemeshError } from '../lib/errors.js';
import type { ServiceRecord } from './catalog-types.js';

export interface FilterSubject { service: ServiceRecord; nodeMeta: Record<string, string> }
export type SubsetFilter = (s: FilterSubject) => boolean;

const unquote = (v: string) => (/^".*"$|^'.*'$|^`.*`$/.test(v) ? v.slice(1, -1) : v);

function selector(path: string): (s: FilterSubject) => string | string[] | undefined {
  const p = path.trim();
  let m = /^Service\.Meta\.(.+)$/.exec(p) ?? /^Service\.Meta\[["'](.+)["']\]$/.exec(p);
  if (m) { const k = m[1]; return (s) => s.service.Meta?.[k]; }
  m = /^Node\.Meta\.(.+)$/.exec(p);
  if (m) { const k = m[1]; return (s) => s.nodeMeta[k]; }
  if (p === 'Service.Tags') return (s) => s.service.Tags ?? [];
  if (p === 'Service.Service' || p === 'Service.Name') return (s) => s.service.Service;
  if (p === 'Service.ID') return (s) => s.service.ID;
  throw new NodemeshError('SUBSET_FILTER_INVALID', `unsupported selector ${JSON.stringify(p)} (use Service.Meta.<key>, Service.Tags, Node.Meta.<key>, Service.ID)`, 400);
}

function clause(text: string): SubsetFilter {
  let t = text.trim();
  let negate = false;
  while (/^not\s+/i.test(t)) { negate = !negate; t = t.replace(/^not\s+/i, ''); }
  let m = /^(.+?)\s*(==|!=)\s*(.+)$/.exec(t);
  let f: SubsetFilter;
  if (m) {
    const sel = selector(m[1]);
    const want = unquote(m[3].trim());
    const eq = m[2] === '==';
    f = (s) => { const v = sel(s); return (Array.isArray(v) ? v.includes(want) : v === want) === eq; };
  } else if ((m = /^(.+?)\s+(not\s+contains|contains)\s+(.+)$/i.exec(t))) {
    const sel = selector(m[1]);
    const want = unquote(m[3].trim());
    const yes = m[2].toLowerCase() === 'contains';
    f = (s) => { const v = sel(s); return (Array.isArray(v) ? v.includes(want) : (v ?? '').includes(want)) === yes; };
  } else if ((m = /^(.+?)\s+(not\s+in|in)\s+(.+)$/i.exec(t))) {
    const want = unquote(m[1].trim());
    const sel = selector(m[3]);
    const yes = m[2].toLowerCase() === 'in';
    f = (s) => { const v = sel(s); return (Array.isArray(v) ? v.includes(want) : (v ?? '').includes(want)) === yes; };
  } else if ((m = /^(.+?)\s+(is\s+empty|is\s+not\s+empty)$/i.exec(t))) {
    const sel = selector(m[1]);
    const empty = !/not/i.test(m[2]);
    f = (s) => { const v = sel(s); return (v === undefined || v.length === 0) === empty; };
  } else {
    throw new NodemeshError('SUBSET_FILTER_INVALID', `cannot parse ${JSON.stringify(text.trim())}: write e.g. Service.Meta.version == v1`, 400);
  }
  return negate ? (s) => !f(s) : f;
}

/** Compiles a filter; throws with what is wrong. An empty filter matches every instance. */
export function compileSubsetFilter(text: string | undefined): SubsetFilter {
  if (!text || !text.trim()) return () => true;
  if (/[()]/.test(text)) throw new NodemeshError('SUBSET_FILTER_INVALID', 'parentheses are not supported in subset filters here; combine clauses with and / or', 400);
  const anyOf = text.split(/\s+or\s+/i).map((part) => part.split(/\s+and\s+/i).map(clause));
  return (s) => anyOf.some((all) => all.every((c) => c(s)));
}
