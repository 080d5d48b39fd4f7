# Stand-in for python:3.11-slim-bookworm (README.md beside this file).
ARG BASE
FROM ${BASE}
# Debian's Python as a venv at /usr/local: python3.11, python and pip where the official image
# has them, and a pip that can uninstall itself (the project's runtime stage does).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local \
    && /usr/local/bin/python -m pip --version
# The host's CA certificates: the registries are reached through a TLS-inspecting proxy here.
# pip and uv read these variables.
COPY host-ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    LANG=C.UTF-8
CMD ["python3"]
