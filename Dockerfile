# The nodemesh container image: compile with tsc in a build stage, run as uid 10001 in a slim Node 24 (LTS) runtime.
#
#   docker build -t nodemesh:dev .
#   docker run --rm nodemesh:dev version
#
# NODE_IMAGE lets a registry mirror stand in for Docker Hub: --build-arg NODE_IMAGE=<mirror>/node:24-bookworm-slim
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: full dependency tree, tsc and the UI bundle, then drop the dev dependencies ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: package.json's `prepare` runs `npm run build`, and the sources are not copied yet
# (copying them later keeps this layer cached while only code changes). The only dependency with an
# install script is esbuild (dev: the UI's bundler, and tsx's), which runs without it (its binary comes as an
# optional dependency).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
# The layers, bottom to top (docs/ARCHITECTURE.md).
COPY lib ./lib
COPY model ./model
COPY config ./config
COPY membership ./membership
COPY catalog ./catalog
COPY policy ./policy
COPY identity ./identity
COPY local ./local
COPY backend ./backend
COPY dataplane ./dataplane
COPY dns ./dns
COPY api ./api
COPY agent ./agent
COPY cli ./cli
# The web UI (beside the layers), bundled into dist/ui.
COPY ui ./ui
COPY scripts/build-ui.mjs ./scripts/build-ui.mjs
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime: compiled JS, production node_modules, nothing else ----
FROM ${NODE_IMAGE}
ENV NODE_ENV=production
# A fixed numeric uid/gid (not the image's `node` user, uid 1000, which may exist on hosts), so the
# DaemonSet's runAsUser/fsGroup 10001 and the hostPath data dir's owner match the image. `nodemesh` on
# PATH is for `kubectl exec … -- nodemesh members`.
RUN groupadd --gid 10001 nodemesh \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nodemesh \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/nodemesh \
 && ln -s /app/bin/nodemesh.js /usr/local/bin/nodemesh
WORKDIR /app
# Owned by root and not writable by the agent's user: the running agent cannot change its own code.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY bin ./bin
USER 10001:10001
# Gossip (TCP and UDP), HTTP API (on 127.0.0.1 unless --client says otherwise), sidecar public listeners.
EXPOSE 8301/tcp 8301/udp 8500/tcp 21000-21255/tcp
# Docker only (Kubernetes ignores HEALTHCHECK; the DaemonSet has its own probes). The slim image has no
# curl, so node's fetch asks the API; it answers on loopback inside the container's network namespace.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8500/v1/agent/self').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/nodemesh.js"]
# A bare `agent` exits 2 outside --dev without a data dir, so the default command names the image's own; it also
# exits 2, saying what to add, until a gossip key, an ACL token and the CA files are given (as the DaemonSet does).
CMD ["agent", "--data-dir=/var/lib/nodemesh"]
