# syntax=docker/dockerfile:1
#
# dave for Cloud Run: a release build in the Rust image, then only the binary
# on a distroless base (glibc + CA certificates, no shell), run as non-root.
# Build from the repository root:
#   docker build -t REGION-docker.pkg.dev/PROJECT_ID/dave/dave .

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target directories are BuildKit caches, so a rebuild after
# a source change recompiles only what changed; the binary is copied out of
# the cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p dave --locked \
    && cp target/release/dave /usr/local/bin/dave

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/dave /usr/local/bin/dave
# 65532:65532, the distroless nonroot user.
USER nonroot:nonroot
ENV APP_ENVIRONMENT=production \
    PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dave"]
CMD ["serve"]
