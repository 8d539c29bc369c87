# One image for every service of a home (elements, clock, router) and for the operator:
#   hometwin service <kind> --name …   hometwin clock …   hometwin router …   hometwin operator …
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY hometwin ./hometwin
COPY services ./services
COPY operator ./operator
# services: Crossbar for `hometwin router`; k8s: kopf and the client for `hometwin operator`;
# db: psycopg for `hometwin record --db postgresql://…`.
# tests/test_image.py installs exactly this set into a fresh venv and runs a home from it.
RUN pip install ".[services,k8s,db]" && rm -rf /src

# Non-root, numeric uid (Pods use runAsNonRoot / runAsUser 10001).
RUN groupadd --gid 10001 hometwin && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home hometwin
USER 10001:10001
WORKDIR /tmp

EXPOSE 8080 8081 9100
ENTRYPOINT ["hometwin"]
CMD ["--help"]
