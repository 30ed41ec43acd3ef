# The single Pico image: the static `pico` binary as the entrypoint, no shell, non-root.
# The chart passes only arguments (`server ...`, `bootstrap ...`, `selftest ...`), so any
# image with /usr/local/bin/pico as its entrypoint works the same way; `make image` builds
# an equivalent one without a Docker daemon (tools/mkimage), and e2e/k8s/run.sh uses it.
#
#   docker build -t pico:dev --build-arg VERSION=$(git describe --tags --always) .
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X github.com/pico-proxy/pico/internal/version.Version=${VERSION}" \
      -o /out/pico ./cmd/pico

# distroless/static: CA certificates and time zone data, nothing else; "nonroot" is 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pico /usr/local/bin/pico
USER 65532:65532
EXPOSE 8000/tcp 8001/tcp 8002/tcp 8003/tcp 8003/udp
ENTRYPOINT ["/usr/local/bin/pico"]
CMD ["server"]
