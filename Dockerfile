# kreg registration service image.
#   docker build -t kreg/registration:dev .
#   docker run --rm --read-only --tmpfs /tmp --tmpfs /data:uid=10001,gid=10001 -p 127.0.0.1:8080:8080 kreg/registration:dev
# Offline machines build the same base locally: `npm run image` (test/cluster/image.sh) passes
# --build-arg BASE_IMAGE=<local base>. Native dependencies (@node-rs/argon2, @libsql/client) come as
# prebuilt optional packages for linux-x64-gnu, so the base must be glibc (Debian), and no install
# scripts or compilers are needed.
# No `# syntax=` line on purpose: it would make BuildKit pull a frontend image from a registry.
ARG BASE_IMAGE=node:24-bookworm-slim
# PEM certificates to trust while npm downloads packages, for networks whose TLS is intercepted by
# a proxy (test/cluster/image.sh passes the machine's extra CAs). Build stages only; the runtime
# stage never sees it.
ARG NPM_EXTRA_CA=""

# --- package.json without the fields npm ci ignores, so editing scripts keeps npm ci cached -----
FROM ${BASE_IMAGE} AS manifest
WORKDIR /app
COPY package.json ./
RUN node -e "const p=require('./package.json');for(const k of ['scripts','description'])delete p[k];require('fs').writeFileSync('deps.json',JSON.stringify(p,null,2))"

# --- all dependencies, to compile ------------------------------------------------------------
FROM ${BASE_IMAGE} AS deps
WORKDIR /app
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY --from=manifest /app/deps.json ./package.json
# The project's .npmrc, if it has one (the glob matches nothing otherwise), applies to npm ci here too.
COPY package-lock.json .npmr[c] ./
ARG NPM_EXTRA_CA
RUN if [ -n "$NPM_EXTRA_CA" ]; then printf '%s\n' "$NPM_EXTRA_CA" >/tmp/extra-ca.pem; export NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem; fi \
 && npm ci --no-audit --no-fund \
 && rm -rf /tmp/extra-ca.pem /root/.npm

# --- TypeScript → build/ (entry points build/service/src/{server,migrate}.js + build/service/drizzle) ---
FROM deps AS build
COPY package.json tsconfig.json ./
COPY service ./service
RUN npm run build && mkdir -p /rootfs-data

# --- production dependencies only (package.json "dependencies"), pruned from the full install ---
# Pruning reuses what the deps stage downloaded instead of fetching the production packages again.
FROM deps AS prod-deps
RUN npm prune --omit=dev --no-audit --no-fund

# --- runtime: node + build/ + production node_modules, as a numeric non-root user --------------
# Before the CLI and operator stages: Docker's classic builder builds every stage up to the target,
# so `--target runtime` (test/cluster/image.sh, kreg dev) then skips bundling the CLI on each build.
FROM ${BASE_IMAGE} AS runtime
ENV NODE_ENV=production \
    DATABASE_URL=file:/data/registrations.db
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/build ./build
COPY package.json ./
# An empty, user-owned /data: a fresh volume mounted there inherits this ownership in Docker, and
# in Kubernetes fsGroup makes the PVC writable. The root filesystem itself can be read-only.
COPY --from=build --chown=10001:10001 /rootfs-data /data
# Numeric, so Kubernetes' runAsNonRoot can verify it (a named user cannot be checked).
USER 10001:10001
EXPOSE 8080
# Exec form, node as PID 1's only process: SIGTERM reaches the service, which fails readiness,
# drains (SHUTDOWN_DRAIN_SECONDS), closes and exits 0. No npm wrapper, no shell needed at run time.
CMD ["node", "build/service/src/server.js"]

# --- the kreg CLI bundle (infra/scripts/build-cli.mjs): one directory, its dependencies inside ---
FROM deps AS cli-build
COPY package.json tsconfig.json ./
COPY service/src ./service/src
COPY charts ./charts
COPY infra ./infra
RUN node infra/scripts/build-cli.mjs --quiet

# --- the operator: node + the CLI bundle, nothing else (docker build --target operator) ---------
# `kreg operator install` deploys it; it runs `kreg operator run` as a numeric non-root user on a
# read-only root filesystem and talks to the API server with its ServiceAccount.
FROM ${BASE_IMAGE} AS operator
ENV NODE_ENV=production
WORKDIR /app
COPY --from=cli-build /app/build/cli ./build/cli
COPY bin/kreg.mjs ./bin/kreg.mjs
COPY package.json ./
USER 10001:10001
EXPOSE 8081
ENTRYPOINT ["node", "bin/kreg.mjs", "operator", "run"]
CMD ["--listen", "0.0.0.0:8081", "--no-install-crd"]

# --- the default target: a plain `docker build .` builds the service ----------------------------
FROM runtime AS service
