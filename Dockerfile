# The image-updater service: the API server and the syncer in one process.
#
#   docker build -t image-updater .
#   docker run -v image-updater:/var/lib/image-updater \
#     -v ./config.yaml:/etc/image-updater/config.yaml:ro -p 8080:8080 image-updater
#
# Where no base image can be pulled, scripts/container-base builds an equivalent local one:
#   podman build --pull=never --build-arg NODE_IMAGE=localhost/node:24-bookworm-slim .
# The TypeScript runs as it is (Node 24 strips the types): nothing is compiled, so the image holds the
# very files the tests ran.

ARG NODE_IMAGE=docker.io/library/node:24-bookworm-slim

# --- production dependencies -----------------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Exactly the locked production dependencies. No install script runs: better-sqlite3 ships its
# prebuilt N-API binary in the package. The optional build secret npm_ca is a CA bundle for
# networks whose TLS to the npm registry goes through an inspecting proxy; it never lands in a layer.
# dockerlinter runs shellcheck over the RUN line as it is, so it reads BuildKit's --mount flag as a
# command (SC2215) and stops parsing there (SC1089); the command itself is plain sh.
# linter ignore=SC2215,SC1089
RUN --mount=type=secret,id=npm_ca,required=false \
    if [ -s /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca npm_config_cafile=/run/secrets/npm_ca; fi \
    && npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && rm -rf /root/.npm
# What the service never reads at run time (about 60 MB): better-sqlite3's C sources and its binaries
# for other platforms, type declarations and source maps. Then prove SQLite still loads.
RUN platform="$(node -p 'process.platform + "-" + process.arch')" \
    && find node_modules/better-sqlite3/prebuilds -name '*.node' ! -name "${platform}.node" -delete \
    && rm -rf node_modules/better-sqlite3/deps node_modules/better-sqlite3/src node_modules/@types \
    && find node_modules -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete \
    && node -e "new (require('better-sqlite3'))(':memory:').prepare('select sqlite_version()').pluck().get()"

# --- the service -----------------------------------------------------------------------------------
FROM ${NODE_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="image-updater" \
      org.opencontainers.image.description="Event-driven GitOps image updater: CI posts a tag, one commit lands in your manifests." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/image-updater/image-updater" \
      org.opencontainers.image.documentation="https://github.com/image-updater/image-updater#readme" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

# git (clone, commit, push; ssh URLs through openssh-client), ripgrep (finds the marker lines),
# jsonnet (checks edited .jsonnet files), tini (PID 1: forwards SIGTERM, reaps git's orphans).
# Versions are not pinned on purpose: bookworm's archive keeps only the current point release of
# each package, so a pinned version stops installing at the next security update. The base tag
# pins the distribution; rebuilding picks up its security fixes.
# linter ignore=ER0012
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git jsonnet openssh-client ripgrep tini \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /opt/yarn-* \
              /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg \
    && groupadd --system --gid 10001 image-updater \
    && useradd --system --uid 10001 --gid image-updater --home-dir /var/lib/image-updater --no-create-home \
               --shell /usr/sbin/nologin image-updater \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/image-updater \
    && install -d -m 0755 /etc/image-updater \
    && ln -s /app/bin/image-updater.ts /usr/local/bin/image-updater

WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY server ./server
COPY shared ./shared
COPY syncer ./syncer
COPY migrations ./migrations

# Mount the configuration here (a ConfigMap in Kubernetes); there is no default, as every
# deployment has its own repositories and tokens.
ENV NODE_ENV=production \
    IMAGE_UPDATER_CONFIG=/etc/image-updater/config.yaml
# The SQLite database and the working copies; keep it on a volume that outlives the container.
VOLUME ["/var/lib/image-updater"]
EXPOSE 8080
USER 10001:10001

# /healthz on the configured port (8080 unless IMAGE_UPDATER_HEALTH_URL says otherwise). Kubernetes
# ignores HEALTHCHECK and uses the probes in deploy/kubernetes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["node", "-e", "fetch(process.env.IMAGE_UPDATER_HEALTH_URL||'http://127.0.0.1:8080/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# `image-updater` is on PATH for operators: kubectl exec … -- image-updater backup --to /var/lib/image-updater/backup.db
# SIGTERM: tini passes it to node, which stops accepting, finishes in-flight requests and the current
# sync step, closes the database and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--max-semi-space-size=8", "--max-old-space-size=128", "/app/bin/image-updater.ts"]
CMD ["serve"]
