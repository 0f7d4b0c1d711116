"""Tooling around the project, not part of what is deployed: the benchmarks (bench, benchserve,
benchreport), the oracle gap of the synthetic data, a headless browser, a loopback Dask cluster,
throw-away copies of the repository, and the loopback S3 server (s3-server.sh). Run them from
the repository's root as `python -m tools.<tool>` (the Makefile's Tools targets do)."""
