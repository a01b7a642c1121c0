# syntax=docker/dockerfile:1.7
#
# tradestack: one image for every service.
#
#   docker build -t tradestack:local .
#   docker run --rm tradestack:local version
#   docker run --rm -p 127.0.0.1:8600:8600 \
#     -e TRADESTACK_SERVICES__EXCHANGE__LISTEN=0.0.0.0:8600 tradestack:local up
#
# The command picks what runs: `up` (default: every service in one process,
# embedded engines) or `serve <service>` (one service, as docker-compose.yml
# does). Needs BuildKit (the default builder of Docker 23+): the cache mounts
# below keep the cargo registry and the target directory between builds, so a
# change to our code recompiles our crates only, not the dependencies.

ARG RUST_VERSION=1.91
ARG DEBIAN_SUITE=bookworm

# ---------------------------------------------------------------- builder ---
FROM rust:${RUST_VERSION}-${DEBIAN_SUITE} AS builder
# Re-declared to be visible in this stage (the cache id below).
ARG RUST_VERSION

# cmake: aws-lc-sys (rustls' crypto). librdkafka (rdkafka-sys) builds with
# make and the C/C++ toolchain already in the rust image; libz-sys and
# zstd-sys use cc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*

ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

WORKDIR /src
COPY . .

# The target directory lives in a cache mount, so the binary is copied out of
# it in the same step. --strip-debug drops the DWARF of `debug = 1` (hundreds
# of MB) but keeps the symbol table, so panics still name their functions.
RUN --mount=type=cache,id=tradestack-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=tradestack-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=tradestack-target-${RUST_VERSION},target=/src/target,sharing=locked \
    cargo build --release --locked -p tradestack \
 && objcopy --strip-debug target/release/tradestack /usr/local/bin/tradestack \
 && /usr/local/bin/tradestack version

# ---------------------------------------------------------------- runtime ---
FROM debian:${DEBIAN_SUITE}-slim AS runtime

ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
ARG UID=10001
ARG GID=10001

# ca-certificates: https alert receivers (Telegram) and remote venues.
# zlib1g and libgcc-s1, the binary's only shared libraries besides libc, are
# part of the base image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid "${GID}" tradestack \
 && useradd --system --uid "${UID}" --gid "${GID}" --home-dir /data \
      --no-create-home --shell /usr/sbin/nologin tradestack \
 && mkdir -p /data /etc/tradestack \
 && chown "${UID}:${GID}" /data \
 && chmod 0750 /data

COPY --from=builder /usr/local/bin/tradestack /usr/local/bin/tradestack

# TRADESTACK_DATA_DIR is a configuration key (data_dir). HEALTHCHECK_URL is
# deliberately NOT prefixed TRADESTACK_: every TRADESTACK_* variable is read
# as a configuration key and an unknown one makes the binary exit 2.
# Its default is the registry, which `up` always runs; docker-compose.yml
# gives each service its own check.
ENV TRADESTACK_DATA_DIR=/data \
    HEALTHCHECK_URL=http://127.0.0.1:8500

WORKDIR /data
USER ${UID}:${GID}
VOLUME ["/data"]

# registry, exchange, marketdata (+ 9009 line protocol), strategy, risk,
# custodian, coordinator, audit
EXPOSE 8500 8600 8700 9009 8800 8900 8950 8960 8970

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD tradestack health --url "$HEALTHCHECK_URL"

STOPSIGNAL SIGTERM
ENTRYPOINT ["tradestack"]
CMD ["up"]

LABEL org.opencontainers.image.title="tradestack" \
      org.opencontainers.image.description="Trading ecosystem in one binary: exchange simulator, market data, strategies, risk, custody, chaos coordinator and audit" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/tradestack" \
      org.opencontainers.image.documentation="https://example.invalid/tradestack/blob/main/docs/DEPLOYMENT.md" \
      org.opencontainers.image.base.name="docker.io/library/debian:${DEBIAN_SUITE}-slim"
