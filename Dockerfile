# One image for every confnode command (node agent, quote helper, attestation, webhook, PCCS).
# Multi-stage: build a wheel with the full toolchain, install it into a slim runtime as non-root.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="confnode" \
      org.opencontainers.image.description="Confidential-computing nodes for Kubernetes (Intel SGX DCAP)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 65532 confnode \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin confnode
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-compile /wheels/*.whl && rm -rf /wheels /root/.cache
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Components that need root on the node (the device plugin's socket directory) set runAsUser: 0
# in their manifests; everything else runs as this user.
USER 65532:65532
ENTRYPOINT ["confnode"]
CMD ["--help"]
