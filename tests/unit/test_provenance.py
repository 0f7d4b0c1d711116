"""kkbox.provenance: the data version from a .dvc file, library versions."""

from __future__ import annotations

from kkbox import provenance


def test_data_version_reads_the_md5_of_the_first_output():
    text = "outs:\n- md5: 0123abcd.dir\n  size: 10\n  path: data\n"
    assert provenance.data_version(text) == "0123abcd.dir"
    assert provenance.data_version("") is None
    assert provenance.data_version("outs: []\n") is None
    assert provenance.data_version("{not: [yaml") is None


def test_library_versions_are_the_installed_ones():
    import xgboost

    versions = provenance.library_versions(("xgboost", "no-such-library-here"))
    assert versions == {"xgboost": xgboost.__version__, "no-such-library-here": None}
    assert set(provenance.library_versions()) == set(provenance.LIBRARIES)
    assert provenance.python_version().startswith("3.")
