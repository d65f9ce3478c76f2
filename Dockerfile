# The rekey image: one static binary in an image FROM scratch, with Debian's
# CA bundle and a numeric non-root user. Two ways to build the same image:
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) .
#       The usual multi-stage build: the default (last) stage compiles the
#       binary in a golang image.
#   make docker-build  (docker or podman build --target prebuilt ...)
#       Takes bin/image/rekey and bin/image/ca-certificates.crt from the build
#       context, built on the host by the Makefile. It pulls no base image at
#       all, so it also works where no registry can be reached.
#
# Both final stages are the same: keep them in step.

# The image the builder stage compiles in (a Debian-based golang image).
ARG GO_IMAGE=golang:1.26

# Stage "prebuilt": the image from files in the build context.
FROM scratch AS prebuilt
ARG VERSION=dev
LABEL org.opencontainers.image.title="rekey" \
      org.opencontainers.image.description="Kubernetes operator that re-encrypts Secret values under a new KMS key" \
      org.opencontainers.image.source="https://github.com/rekey-dev/rekey" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY bin/image/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY bin/image/rekey /rekey
USER 65532:65532
ENTRYPOINT ["/rekey"]
CMD ["controller"]

# Stage "builder": compile the binary (static: CGO_ENABLED=0).
FROM ${GO_IMAGE} AS builder
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev

WORKDIR /workspace
# Module manifests first, so the dependency layer is cached across source changes.
COPY go.mod go.sum ./
RUN go mod download

# The Go sources (.dockerignore keeps everything else out).
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/

RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o rekey ./cmd/rekey

# The default stage: the same image as "prebuilt", from the builder's files
# (the golang image is Debian, so its CA bundle is Debian's).
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="rekey" \
      org.opencontainers.image.description="Kubernetes operator that re-encrypts Secret values under a new KMS key" \
      org.opencontainers.image.source="https://github.com/rekey-dev/rekey" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /workspace/rekey /rekey
USER 65532:65532
ENTRYPOINT ["/rekey"]
CMD ["controller"]
