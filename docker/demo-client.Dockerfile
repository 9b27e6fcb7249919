# The demo client and its sidecar in one FROM-scratch image (examples/compose/). PID 1 is
# `rookery sidecar` (ROOKERY_SIDECAR_* variables: the routes), which starts demo-client; the
# client calls the demo service through the sidecar's outbound listener (127.0.0.1:15001) and
# runs an election and a fenced lock on the ensemble (DEMO_* variables, see
# examples/examples/demo-client.rs). Built by scripts/docker-build.sh (no registry needed).
FROM scratch
COPY rookery /rookery
COPY demo-client /demo-client
EXPOSE 15000
ENTRYPOINT ["/rookery", "sidecar"]
CMD ["--", "/demo-client"]
