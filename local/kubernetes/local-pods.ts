// This node's annotated pods as local registrations: the pod watcher wired to the agent's local state.

import type { Logger } from 'pino';
import { decodeServiceObject } from '../../model/service-definition.js';
import type { LocalState } from '../local-state.js';
import { META_POD_UID } from './pod-registrations.js';
import { PodWatcher } from './pod-watcher.js';

/** A watcher that registers this node's pods into `local`; undefined without a cluster config and NODE_NAME. */
export function watchLocalPods(local: LocalState, log: Logger): Promise<PodWatcher | undefined> {
  return PodWatcher.fromEnvironment(log, {
    register: async (def) => {
      await local.registerService(decodeServiceObject(def as unknown as Record<string, unknown>), { replaceExistingChecks: true });
    },
    deregister: (id) => local.deregisterService(id),
    previous: () => local.services().filter((s) => s.Meta[META_POD_UID] !== undefined && !s.LocallyRegisteredAsSidecar).map((s) => s.ID),
  });
}
