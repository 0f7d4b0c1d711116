"""The CD4ML loop: everything between a problem's raw data and a model watched in production,
and nothing of any problem. It reaches the problem (src/kkbox, the example) only through
cd4ml.problem's interface; params.yaml's `problem:` names it.

    the interface      problem (Problem, Featurizer, ModelKind), params (params.yaml through
                       pydantic), contract (declaring raw tables), io
    data               reading, validation (contract checks, profile, drift), split, generate,
                       ingest / ingestion / incoming / chunks (new data versions), remote (S3)
    pipeline           engine (local or Dask; cluster), model, metrics, plots, checks (sanity),
                       bundle (the pickle-free release), provenance
    release            gate (the challenger against the champion), registry (GTO), report,
                       mrnote, history
    production         serve (FastAPI), predlog (the prediction log), monitor

The stages (src/<stage>.py, dvc.yaml) and the tools (`python -m cd4ml.<tool>`) import these; a
stage imports only what it uses, so editing a tool reruns nothing.
"""
