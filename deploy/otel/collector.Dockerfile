# The OpenTelemetry collector image is FROM scratch: no shell, no wget, so Docker cannot probe
# it. This adds one static busybox binary for the healthcheck and nothing else.
FROM busybox:1.37.0-musl AS busybox

FROM otel/opentelemetry-collector-contrib:0.128.0
COPY --from=busybox /bin/busybox /busybox
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:13133/"]
