# syntax=docker/dockerfile:1
# One image for every mesh service. docker-compose.yml runs it as the server, the client, the
# agent and the worker (`mesh run <service>`); on its own, `docker run` gives the embedded mesh.
# tests/test_compose.py checks this file against the project (Python version, what is installed,
# labels) and lints it with hadolint; docs/operations.md explains the choices.

ARG PYTHON_VERSION=3.11

# -- build: mesh and the bundled plugins, installed into a virtualenv -------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/mesh
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mesh/ mesh/
COPY services/ services/
COPY contracts/ contracts/
COPY plugins/ plugins/
# Not editable, no [dev] extra: what `make install` installs, as a user would have it, with
# the tracing extra, so MESH_TRACING works without another image.
RUN /opt/mesh/bin/pip install ".[tracing]" ./plugins/greeter ./plugins/identity ./plugins/noop \
    ./plugins/tutorial ./plugins/tutorial_stats

# -- run ---------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm
LABEL org.opencontainers.image.title="mesh" \
      org.opencontainers.image.description="A plugin platform built as an asyncio microservice mesh on RabbitMQ: the server, client, agent and worker in one image" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"
# A user of its own. It owns the virtualenv because uploaded plugins are pip-installed into it
# at run time (docs/plugins-upload.md); /var/lib/mesh is the data directory.
RUN groupadd --system --gid 10001 mesh \
 && useradd --system --uid 10001 --gid mesh --home-dir /var/lib/mesh --no-create-home \
        --shell /usr/sbin/nologin mesh \
 && install -d -o mesh -g mesh -m 0750 /var/lib/mesh
COPY --from=build --chown=mesh:mesh /opt/mesh /opt/mesh
# Inside a container the admin API and the device gateway listen on every interface: the
# published ports are how they are reached.
ENV PATH=/opt/mesh/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MESH_DATA_DIR=/var/lib/mesh \
    MESH_LOG_FORMAT=json \
    MESH_ADMIN_HOST=0.0.0.0 \
    MESH_CLIENT_HOST=0.0.0.0
WORKDIR /var/lib/mesh
USER 10001:10001
EXPOSE 8000 8010
# No HEALTHCHECK here: the image is four services, and only the compose file knows which one a
# container runs (`mesh health <service>` in docker-compose.yml).
CMD ["mesh", "up"]
