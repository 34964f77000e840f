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

# --- the service bundled (infra/scripts/build-service.mjs): build/service/src/{server,migrate}.js,
# the migrations, and the native packages they load. esbuild only, no type-check (CI does that), so
# a source change rebuilds in about a second.
FROM deps AS service-build
COPY tsconfig.json ./
COPY infra/scripts/build-service.mjs infra/scripts/esbuild-node.mjs ./infra/scripts/
COPY service ./service
RUN node infra/scripts/build-service.mjs --quiet

# --- the runtime images' root filesystem (infra/images/runtime/rootfs.sh): node, the shared
# libraries it and the native addons load, CA certificates, time zone data, passwd and group.
# Assembled in a Debian stage from the base's own files, so it builds with no registry and no
# network, wherever the base came from.
FROM deps AS runtime-root
COPY infra/images/runtime/rootfs.sh /usr/local/bin/kreg-rootfs
# The local base has CA certificates and time zone data; node:*-slim may not, and can fetch them.
RUN if [ ! -s /etc/ssl/certs/ca-certificates.crt ] || [ ! -d /usr/share/zoneinfo ]; then \
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates tzdata; \
    fi \
 && kreg-rootfs /rootfs /usr/local/bin/node $(find /app/node_modules -name '*.node')

# --- the runtime base: that root filesystem and nothing else. No shell, no package manager. -----
FROM scratch AS runtime-base
COPY --from=runtime-root /rootfs /
# COPY makes root the owner of what it copies; /data is the service user's (rootfs.sh says why).
COPY --from=runtime-root --chown=10001:10001 /rootfs/data /data
ENV PATH=/usr/local/bin \
    NODE_ENV=production
WORKDIR /app

# --- runtime-libs: everything of the runtime but the service's code, as a numeric non-root user.
# Layers from the least to the most often changed. `kreg dev` tags this stage once per full build
# and, for a change under service/src only, puts a bundle made on the host on top of it
# (infra/images/dev/Dockerfile) instead of building here again.
# Before the CLI and operator stages: Docker's classic builder builds every stage up to the target,
# so `--target runtime` (test/cluster/image.sh, kreg dev) then skips bundling the CLI on each build.
FROM runtime-base AS runtime-libs
ENV DATABASE_URL=file:/data/registrations.db
COPY --from=service-build /app/build/service/node_modules ./build/service/node_modules
COPY --from=service-build /app/build/service/package.json ./build/service/
COPY --from=service-build /app/build/service/drizzle ./build/service/drizzle
COPY --from=service-build /app/build/service/drizzle-pg ./build/service/drizzle-pg
# Numeric, so Kubernetes' runAsNonRoot can verify it (a named user cannot be checked).
USER 10001:10001
EXPOSE 8080
# Exec form, node as PID 1's only process: SIGTERM reaches the service, which fails readiness,
# drains (SHUTDOWN_DRAIN_SECONDS), closes and exits 0. There is no shell to wrap it in anyway.
CMD ["node", "build/service/src/server.js"]

# --- runtime: the service. Its code is the last layer, a few MB: what a source change ships. ----
FROM runtime-libs AS runtime
COPY --from=service-build /app/build/service/src ./build/service/src

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
FROM runtime-base AS operator
COPY --from=cli-build /app/build/cli ./build/cli
COPY bin/kreg.mjs ./bin/kreg.mjs
COPY package.json ./
USER 10001:10001
EXPOSE 8081
ENTRYPOINT ["node", "bin/kreg.mjs", "operator", "run"]
CMD ["--listen", "0.0.0.0:8081", "--no-install-crd"]

# --- the default target: a plain `docker build .` builds the service ----------------------------
FROM runtime AS service
