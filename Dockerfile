# One image for every perpnet service: `python -m perpnet.<service>` picks the process.
#
#   docker build --network host -t perpnet .     (host network: pip reaches PyPI)
#
# Stage 1 installs perpnet and its dependencies into a virtualenv (wheels only:
# every dependency ships a manylinux wheel, so no compiler is needed) and
# compiles the Vyper contracts once. Stage 2 is the slim runtime: the venv, a
# non-root user, no build tools, no pip cache.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml alone: edits to the code reuse this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install --only-binary=:all: --upgrade pip \
 && pip install --prefer-binary -r /tmp/requirements.txt
COPY README.md ./
COPY services ./services
RUN pip install --no-deps . \
 && PERPNET_VYPER_CACHE=/opt/perpnet/vyper python -c "from perpnet.l1.deploy import artifacts; from perpnet.l1.stark_verifier import precompile; artifacts('facts'); precompile()" \
 && python -m compileall -q /opt/venv/lib \
 && pip uninstall -y -q pip setuptools wheel

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="perpnet" \
      org.opencontainers.image.description="perpnet services: python -m perpnet.<service>"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PERPNET_VYPER_CACHE=/opt/perpnet/vyper \
    PERPNET_BIND_HOST=0.0.0.0
RUN groupadd --system --gid 10001 perpnet \
 && useradd --system --uid 10001 --gid perpnet --create-home --home-dir /home/perpnet perpnet \
 && mkdir -p /shared /data && chown perpnet:perpnet /shared /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/perpnet /opt/perpnet
COPY deploy/docker/entrypoint.sh /usr/local/bin/perpnet-entrypoint
USER perpnet
WORKDIR /data
ENTRYPOINT ["perpnet-entrypoint"]
CMD ["perpnet", "--help"]
