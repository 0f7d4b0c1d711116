"""The workflow tools around the pipeline: data, ingest, gate, remote, history, bench.

No pipeline stage imports this package (dvc.yaml's stages depend only on src/<stage>.py and
src/kkbox), so editing a tool reruns nothing. Each tool runs as `python -m cd4ml.<tool>`.
"""
