# The base image of CI's builds, for machines without an image registry (scripts/docker base builds it).
# Stands in for python:3.12-slim-bookworm: Debian bookworm (imported from debootstrap --variant=minbase, with
# python3 and python3-venv) and Python in a venv on PATH, since Debian has no `python` command and its system
# Python is externally managed. The CA bundle is the build machine's, for pip behind its TLS proxy: it is in
# this base only, never in an image built from Dockerfile.base with its default base.
ARG MINBASE
FROM ${MINBASE}
COPY ca-certificates.crt /usr/local/share/kfaas-ci/ca-certificates.crt
RUN python3 -m venv /opt/python \
 && printf '[global]\ncert = /usr/local/share/kfaas-ci/ca-certificates.crt\n' >/etc/pip.conf
ENV PATH=/opt/python/bin:$PATH \
    LANG=C.UTF-8
CMD ["python3"]
