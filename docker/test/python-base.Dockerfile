# A stand-in for rayproject/ray, built from Debian's packages only, for the compose test
# (tests/test_compose.py) on machines that cannot pull images. It provides what
# docker/Dockerfile expects of its BASE_IMAGE: Python 3.11 with pip on PATH for a user
# `ray` (uid 1000, group 100, home /home/ray) who may pip install, bash and flock.
#
# The build context is a folder that the test fills with this file and the host's CA
# bundle (ca-certificates.crt): behind a TLS-inspecting proxy, pip in later builds
# trusts what the host trusts. A CA bundle holds public certificates, no secret.
ARG DEBIAN_IMAGE=study-test/debian:bookworm
FROM ${DEBIAN_IMAGE}

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN useradd --create-home --home-dir /home/ray --shell /bin/bash --uid 1000 --gid 100 ray

USER ray
ENV HOME=/home/ray \
    PATH=/home/ray/venv/bin:$PATH \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /home/ray/venv \
    && pip install --no-cache-dir --quiet --upgrade pip
WORKDIR /home/ray
