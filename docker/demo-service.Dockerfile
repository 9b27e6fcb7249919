# The demo service and its sidecar in one FROM-scratch image (examples/compose/). PID 1 is
# `rookery sidecar`, configured by ROOKERY_SIDECAR_* variables; it starts demo-service, registers
# it once healthy, and on SIGTERM deregisters it, drains, and only then stops it. One container
# is one instance, so `docker compose up --scale demo=N` scales service and sidecar together.
# Built by scripts/docker-build.sh from the statically linked binaries (no registry needed).
FROM scratch
COPY rookery /rookery
COPY demo-service /demo-service
EXPOSE 15000 15002
ENTRYPOINT ["/rookery", "sidecar"]
CMD ["--", "/demo-service", "--listen", "127.0.0.1:8080"]
