# Rally's container image: built in stages so the runtime image holds only the binary.
# The image runs exactly what `cargo run --release` runs (`rally serve`); only RALLY_BIND and
# RALLY_DATA_DIR differ, so the server listens on all interfaces and keeps its data in a volume.

FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /app

# The dependency recipe changes only when Cargo.toml/Cargo.lock do, so the slow layer is cached.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin rally

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/rally rally \
    && mkdir -p /var/lib/rally \
    && chown rally:rally /var/lib/rally
COPY --from=builder /app/target/release/rally /usr/local/bin/rally
USER rally
WORKDIR /var/lib/rally
ENV RALLY_BIND=0.0.0.0:8080 \
    RALLY_DATA_DIR=/var/lib/rally
EXPOSE 8080
VOLUME ["/var/lib/rally"]
ENTRYPOINT ["/usr/local/bin/rally"]
CMD ["serve"]
