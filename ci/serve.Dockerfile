# Serving image: the released bundle behind `python -m cd4ml.serve`, nothing else of the pipeline.
# The deploy job fetches the version into served/ first (python -m cd4ml.registry fetch --version
# vX.Y.Z --out served/bundle), then, from the repository root:
#   docker build -f ci/serve.Dockerfile -t "$CI_REGISTRY_IMAGE/serve:vX.Y.Z" .
#   docker run -p 8000:8000 "$CI_REGISTRY_IMAGE/serve:vX.Y.Z"
# A Docker engine is not available where this project is developed: this file is not built by
# the tests (the same command it runs is, by the deploy job and tests/e2e/test_serve.py).
FROM python:3.11-slim

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIPENV_VENV_IN_PROJECT=1 PIPENV_YES=1 PIPENV_NOSPIN=1 \
    DVC_NO_ANALYTICS=1 PYTHONUNBUFFERED=1

RUN pip install --no-cache-dir pipenv==2026.10.3

WORKDIR /srv/cd4ml
COPY Pipfile Pipfile.lock pyproject.toml ./
COPY src ./src
# The locked environment, the project included (the same versions that built and tested the bundle).
RUN pipenv install --deploy && rm -rf /root/.cache

COPY params.yaml ./
COPY served/bundle ./bundle
COPY served/bundle.json ./bundle.json

RUN useradd --system --no-create-home cd4ml
USER cd4ml
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"
CMD [".venv/bin/python", "-m", "cd4ml.serve", "--bundle", "bundle", "--host", "0.0.0.0", "--port", "8000"]
