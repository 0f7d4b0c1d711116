# Serving image: the released bundle behind `python -m cd4ml.serve`, nothing else of the pipeline.
# Built and run without a Docker daemon by buildah (make system-deps), which makes the build
# context in a temp folder from a bundle folder and its sidecar <folder>.json:
#   tools/image.sh build served/bundle "$CI_REGISTRY_IMAGE/serve:vX.Y.Z"
#   tools/image.sh run "$CI_REGISTRY_IMAGE/serve:vX.Y.Z" 8000
# With Docker, from the repository root, once the deploy job's fetch (python -m cd4ml.registry
# fetch --version vX.Y.Z --out served/bundle) and the locked requirements are in served/:
#   pipenv requirements --hash | grep -v '^-e ' > served/requirements.txt
#   docker build -f ci/serve.Dockerfile -t "$CI_REGISTRY_IMAGE/serve:vX.Y.Z" .
#   docker run -p 8000:8000 -e CD4ML_LOG_KEY "$CI_REGISTRY_IMAGE/serve:vX.Y.Z"
# CD4ML_LOG_KEY: the secret the prediction log hashes the member ids with (else it refuses to start).
# BASE: any Debian-like image with python3 3.11 and its venv module. No registry is reachable
# where this project is developed: tools/image.sh makes one (apt's python3, python3-venv).
ARG BASE=python:3.11-slim
FROM ${BASE}

# Build only: the CA bundle pip trusts, a file that tools/image.sh mounts for the build (outbound
# TLS may be re-signed); empty: pip's own. Nothing of it stays in the image.
ARG PIP_CERT=""

# CD4ML_PUBLIC_KEY: the release key's public half; the service refuses a bundle it did not sign.
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/srv/cd4ml/src PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HOST=0.0.0.0 PORT=8000 \
    CD4ML_PUBLIC_KEY=/srv/cd4ml/release.pub

# A numeric user, so that an orchestrator can check it is not root (runAsNonRoot); the prediction
# log (params.yaml's serve.prediction_log, logs/predictions) is the service's only write.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin cd4ml \
 && mkdir -p /srv/cd4ml/logs && chown 10001:10001 /srv/cd4ml/logs

# Pipfile.lock's default packages with their hashes, without resolving: the versions that built
# and tested the bundle. It changes less often than the code: its layer comes first.
COPY served/requirements.txt /opt/venv/requirements.txt
RUN python3 -m venv /opt/venv \
 && pip install --quiet --no-cache-dir --no-deps --require-hashes \
      -r /opt/venv/requirements.txt

# The project's packages on PYTHONPATH (nothing to build), compiled here: the user cannot write.
WORKDIR /srv/cd4ml
COPY src/cd4ml ./src/cd4ml
COPY src/kkbox ./src/kkbox
RUN python -m compileall -q src
COPY params.yaml ./
COPY served/bundle ./bundle
COPY served/bundle.json ./bundle.json
COPY served/release.pub ./release.pub

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['PORT']}/readyz\", timeout=2)"]
# HOST and PORT: where to listen (docker run -e PORT=9000 ...); exec: the server gets the signals.
CMD ["sh", "-c", "exec python -m cd4ml.serve --bundle bundle --host \"$HOST\" --port \"$PORT\""]
