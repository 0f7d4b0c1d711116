"""The KKBox music recommendation problem: will a listener replay a song within a month?

The example problem of the loop (cd4ml), and the package you replace to put your own model
under continuous delivery (docs/adapt.md). It is the data and the model, nothing of the loop:

    tables.py      the raw tables and their contract; Play, one raw row to score
    synth.py       the synthetic KKBox generator (make data); kaggle.py, the real files
    features.py    the features, pure functions on frames
    featurizer.py  the fitted featurizer as files (the bundle scores raw rows with it)
    fit.py         fitting it: in one process, or as a plan of passes for the Dask engine
    kinds/         the model kinds: xgb, rf, logreg

params.yaml's `problem: kkbox` makes the loop import this package and use PROBLEM.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from cd4ml.problem import FeatureOutput, Featurizer, ModelKind


class KKBox:
    """The problem (cd4ml.problem.Problem); its modules are imported when first used."""

    name = "kkbox-recommender"
    description = "Probability that a KKBox listener replays a song within a month."
    flags = ("unknown_member", "unknown_song")
    private = ("msno",)  # the member: its prediction log keeps a keyed hash of it
    slice_columns = ("source_type",)  # the gate compares the models on each value's rows
    # make ablation drops each group in turn (names or fnmatch patterns of features.FEATURES;
    # every feature in one group, each target encoding a family of its own)
    feature_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "source": ("source_*",),
        "member": (
            *("city", "gender", "registered_via", "bd"),
            *("membership_days", "registration_year", "member_plays"),
        ),
        "song": (
            *("song_*", "language", "first_genre", "genre_count"),
            *("composer_count", "lyricist_count", "isrc_*"),
        ),
        "artist": ("artist_plays",),
        "taste": ("member_genre_share", "member_artist_share", "member_language_share"),
        **{f"te_{k}": (f"te_{k}",) for k in ("member", "song", "artist")},
        **{f"te_member_{k}": (f"te_member_{k}",) for k in ("genre", "artist", "source")},
    }
    scales = ("tiny", "small", "medium", "full")

    @property
    def contract(self) -> Any:
        from kkbox.tables import CONTRACT

        return CONTRACT

    @property
    def Row(self) -> Any:
        from kkbox.tables import Play

        return Play

    @property
    def sections(self) -> dict[str, Any]:
        from kkbox.fit import Preprocess
        from kkbox.synth import Generate

        return {"generate": Generate, "preprocess": Preprocess}

    @cached_property
    def kinds(self) -> Mapping[str, ModelKind]:
        from cd4ml.problem import discover_kinds

        return discover_kinds("kkbox.kinds")

    def synthesize(self, out: Path, scale: str, settings: Any) -> None:
        from kkbox import synth

        synth.write(out, scale, settings.seed, settings.positive_rate, **settings.time_effects())

    def download(self, out: Path) -> None:
        from kkbox import kaggle

        kaggle.download(out)

    def fit(
        self, data: Path, parts: Mapping[str, Path], settings: Any, out: FeatureOutput
    ) -> None:
        from kkbox import fit

        fit.fit(data, dict(parts), settings, out)

    def plan(self, settings: Any) -> Any:
        from kkbox.fit import Plan

        return Plan(settings)

    def load_featurizer(self, folder: Path) -> Featurizer:
        from kkbox import featurizer

        return featurizer.load(folder)

    def slices(self, x: pd.DataFrame) -> dict[str, np.ndarray]:
        from kkbox.features import slices

        return slices(x)


PROBLEM = KKBox()
