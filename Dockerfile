# commander's container image: `docker build -t commander .` from the repository root.
# Two stages: a Rust builder, then a small Debian runtime holding the binary, the libraries it
# links (libpq for PostgreSQL; SQLite is compiled in) and the default configuration.

FROM rust:1.95-slim-bookworm AS builder
# libpq-dev: diesel's PostgreSQL driver links libpq; pkg-config finds it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY . .
# The dependency cache: BuildKit cache mounts keep the downloaded crates and the compiled
# dependencies between builds, so a source edit recompiles only the workspace's own crates.
# (A layer keyed on the manifests would need stub sources for every declared example, bench
# and test target, and would be thrown away by any change to Cargo.lock anyway.)
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked -p commander \
    && install -m 0755 target/release/commander /usr/local/bin/commander

FROM debian:bookworm-slim
# libpq5: the PostgreSQL client library the binary links. ca-certificates: the system roots
# the providers' TLS connections are verified against. curl: the HEALTHCHECK below (and the
# compose file's), since the binary has no probe command of its own.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric UID/GID, so orchestrators can check runAsNonRoot and volumes can be chowned
# to it ahead of time.
RUN groupadd --system --gid 10001 commander \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/commander \
       --shell /usr/sbin/nologin commander \
    && mkdir -p /var/lib/commander/data /var/lib/commander/catalogue \
    && chown -R 10001:10001 /var/lib/commander
COPY --from=builder /usr/local/bin/commander /usr/local/bin/commander
COPY deploy/commander.toml /etc/commander/commander.toml
# The repository's catalogue as the starting one: a named volume mounted on catalogue/ is
# filled from the image the first time (commander would otherwise write its built-in default).
COPY --chown=10001:10001 config/specialists.json /var/lib/commander/catalogue/specialists.json

# Read by `--config` (clap's env fallback); COMMANDER__* variables override single keys.
ENV COMMANDER_CONFIG=/etc/commander/commander.toml \
    COMMANDER__SERVER__BIND=0.0.0.0:8000
WORKDIR /var/lib/commander
# data/: the SQLite file (single instance), the usage journal and the dead-letter file. One
# volume per instance: the journal is locked by the process that owns it.
VOLUME ["/var/lib/commander/data"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/health"]
# Exec form: commander is PID 1 and gets SIGTERM itself, so in-flight calls finish within
# server.shutdown_grace_seconds and queued usage rows are written before it exits.
ENTRYPOINT ["/usr/local/bin/commander"]
CMD ["serve"]
