# syntax=docker/dockerfile:1
# phi-gateway container image: multi-stage, the runtime is distroless (no shell, no package
# manager) and runs as the unprivileged "nonroot" user (65532).
#
#   docker build --build-arg PHI_GATEWAY_REVISION=$(git rev-parse --short HEAD) -t phi-gateway:0.1.0 .
#   docker run --rm -p 8443:8443 -v /etc/phi-gateway:/etc/phi-gateway:ro phi-gateway:0.1.0 \
#     run --config /etc/phi-gateway/gateway.yaml
#
# Kubernetes runs it with a read-only root filesystem (deploy/kubernetes/deployment.yaml).

# The toolchain CI builds and tests with (Cargo.toml's rust-version is only the minimum).
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
# cmake + a C/C++ toolchain: pingora builds zlib-ng (libz-ng-sys) from source.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake make g++ pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml declares the criterion bench target; keep its file so the manifest's targets resolve.
COPY benches ./benches
ARG PHI_GATEWAY_REVISION=unknown
ENV PHI_GATEWAY_REVISION=${PHI_GATEWAY_REVISION}
# --locked: build exactly Cargo.lock, fail rather than resolve anew.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin phi-gateway \
 && install -D -m 0755 target/release/phi-gateway /out/usr/bin/phi-gateway \
 && /out/usr/bin/phi-gateway --version

# glibc + libgcc + ca-certificates (system roots for upstream TLS), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/bin/phi-gateway /usr/bin/phi-gateway
# The default rule pack, for reference and for `phi-gateway rules test`; mount your own at
# the rules.dir of your gateway.yaml.
COPY rules /usr/share/phi-gateway/rules
USER 65532:65532
EXPOSE 8443 9464
ENTRYPOINT ["/usr/bin/phi-gateway"]
CMD ["run", "--config", "/etc/phi-gateway/gateway.yaml"]
