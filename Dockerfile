# Build the rekey binary.
ARG BASE_IMAGE=golang:1.26
FROM ${BASE_IMAGE} AS builder
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev

WORKDIR /workspace
# Module manifests first, so the dependency layer is cached across source changes.
COPY go.mod go.sum ./
RUN go mod download

# The Go sources (.dockerignore keeps everything else out).
COPY . .

RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o rekey ./cmd/rekey

# A static, distroless final image, running as a non-root user.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/rekey /rekey
USER 65532:65532

ENTRYPOINT ["/rekey"]
CMD ["controller"]
