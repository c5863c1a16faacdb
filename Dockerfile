# One image for the whole add-on: /manager (the Deployment), /hosts-updater (the DaemonSet),
# /kubectl-ips and /tcr-credential-provider (the kubelet's plugin, which a DaemonSet installs).
# Build it with 'make docker-build IMG=<registry>/tcr-assistant:<tag>'. 'make image' builds the
# same without Docker (internal/image), and its tests fail when the go build or the final stage
# here changes until internal/image follows.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/manager ./cmd/hosts-updater ./cmd/kubectl-ips ./cmd/tcr-credential-provider

# Static binaries only: no shell, no package manager, user 65532 (nonroot) by default. The
# hosts-updater DaemonSet overrides the user, because the node's /etc/hosts belongs to root.
FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/manager /out/hosts-updater /out/kubectl-ips /out/tcr-credential-provider /
USER 65532:65532
ENTRYPOINT ["/manager"]
