# Tempo's image is distroless: no shell, no wget, so Docker cannot probe it. This adds one
# static busybox binary for the healthcheck, and a /var/tempo owned by Tempo's user so a
# fresh named volume mounted there starts writable.
FROM busybox:1.37.0-musl AS busybox

FROM grafana/tempo:2.8.1
COPY --from=busybox /bin/busybox /busybox
COPY --from=busybox --chown=10001:10001 /tmp /var/tempo
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3200/ready"]
