# A stand-in for the postgres:17 image, built from Debian's packages only, for the
# compose test (tests/test_compose.py) on machines that cannot pull images. It keeps the
# parts of the official image that docker-compose.yml relies on: POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB on first start, *.sql files in
# /docker-entrypoint-initdb.d run once when the data folder is new (with a temporary
# server that listens on the Unix socket only, as the official image does), the data
# in /var/lib/postgresql/data, password logins over TCP (scram-sha-256), pg_isready.
# Debian 12 ships PostgreSQL 15, not 17: nothing in the stack needs 17.
ARG DEBIAN_IMAGE=study-test/debian:bookworm
FROM ${DEBIAN_IMAGE}

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
    && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql \
    && chmod 0700 /var/lib/postgresql/data
COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
