// A page's data from the API: loaded on mount and on demand (reload), with the error shown rather than thrown.

import { useCallback, useEffect, useState } from 'preact/hooks';
import { api } from './api.js';

export function useApi<T>(path: string): { data?: T; error?: string; reload: () => void } {
  const [state, setState] = useState<{ data?: T; error?: string }>({});
  const reload = useCallback(() => {
    api<T>('GET', path).then((data) => setState({ data }), (e: Error) => setState({ error: e.message }));
  }, [path]);
  useEffect(reload, [reload]);
  return { ...state, reload };
}
