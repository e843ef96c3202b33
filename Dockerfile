# syntax=docker/dockerfile:1
# k3scale images, built from the workspace root:
#   docker build -t k3scale .                  # static binary on distroless (default)
#   docker build --target exec -t k3scale:exec .   # + sh and ssh for exec-provider scripts
#
# The binary is linked statically against musl (Alpine's native target), so
# the default image holds nothing but the binary, CA certificates and a
# non-root user.

FROM rust:1.95-alpine3.22 AS build
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev build-base cmake perl
WORKDIR /src
# The commit `k3scale --version` names (.git is not in the build context):
#   docker build --build-arg K3SCALE_COMMIT="$(git rev-parse --short=12 HEAD)" .
ARG K3SCALE_COMMIT=unknown
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    K3SCALE_COMMIT="$K3SCALE_COMMIT" cargo build --release --locked -p k3scale --features aws \
    && install -D -m 755 target/release/k3scale /out/k3scale \
    && strip /out/k3scale

FROM gcr.io/distroless/static-debian12:nonroot AS static
COPY --from=build /out/k3scale /usr/local/bin/k3scale
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/k3scale"]
CMD ["run", "--config", "/etc/k3scale/k3scale.yaml"]

FROM alpine:3.22 AS exec
# tzdata: disruption budget schedules in a timezone (distroless has it).
# hadolint ignore=DL3018
RUN apk add --no-cache ca-certificates openssh-client tzdata \
    && adduser -D -H -u 65532 nonroot
COPY --from=build /out/k3scale /usr/local/bin/k3scale
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/k3scale"]
CMD ["run", "--config", "/etc/k3scale/k3scale.yaml"]

# The default target: the small static image.
FROM static
