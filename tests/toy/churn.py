"""The toy churn problem's data and features: a seeded generator with a known churn probability
per customer, and a featurizer (plan and region codes, a few ratios) fitted on the train part."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field

from cd4ml.io import UserError, atomic_dir, read_parquet, write_csv, write_json
from cd4ml.params import Section, Seed
from cd4ml.problem import Features

PLANS = ("basic", "plus", "pro")
REGIONS = ("north", "south", "east", "west")
SCALES = {"tiny": 12_000, "small": 60_000}
FEATURES = [
    "plan",
    "region",
    "tenure_months",
    "monthly_charge",
    "support_calls",
    "calls_per_year",
    "charge_per_plan",
]
FILE = "featurizer.json"


class Generate(Section):
    """params.yaml's generate (the toy's): the seed and how fast churn drifts up over time."""

    seed: Seed
    churn_drift: Annotated[float, Field(ge=0, le=3)]


class Preprocess(Section):
    """params.yaml's preprocess (the toy's): rarer plans or regions are 'unknown'."""

    min_category_count: Annotated[int, Field(ge=1)]


def write(out: Path, rows: int, settings: Generate) -> None:
    """customers.csv (signup order), new_customers.csv and the true churn probabilities."""
    rng = np.random.default_rng(settings.seed)
    n = rows + rows // 4
    plan = rng.choice(len(PLANS), n, p=[0.5, 0.35, 0.15])
    region = rng.choice(len(REGIONS) + 1, n, p=[0.3, 0.3, 0.2, 0.15, 0.05])  # last: missing
    tenure = rng.integers(0, 72, n).astype(np.int16)
    charge = np.round(np.array([20.0, 45.0, 90.0])[plan] * rng.uniform(0.8, 1.2, n), 2)
    calls = rng.poisson(0.5 + 1.5 * (plan == 0), n).astype(np.int16)
    when = np.linspace(0, 1, n)
    logit = (
        -1.0
        + 0.6 * calls
        - 0.04 * tenure
        + np.array([0.5, 0.0, -0.6])[plan]
        + np.array([0.0, 0.3, -0.2, 0.1, 0.0])[region]
        + settings.churn_drift * when
    )
    probability = 1.0 / (1.0 + np.exp(-logit))
    churned = (rng.random(n) < probability).astype(np.int8)
    regions = np.array([*REGIONS, None], dtype=object)[region]
    fields = {
        "plan": np.array(PLANS, dtype=object)[plan],
        "region": regions,
        "tenure_months": tenure,
        "monthly_charge": charge.astype(np.float32),
        "support_calls": calls,
    }
    old = slice(0, rows)
    with atomic_dir(out) as tmp:
        write_csv(
            {
                "customer_id": np.array([f"c{i:06d}" for i in range(rows)], dtype=object),
                **{k: v[old] for k, v in fields.items()},
                "churned": churned[old],
            },
            tmp / "customers.csv",
        )
        write_csv({"target_probability": probability[old].round(6)}, tmp / "customers_truth.csv")
        write_csv(
            {
                "id": np.arange(n - rows, dtype=np.int32),
                **{k: v[rows:] for k, v in fields.items()},
            },
            tmp / "new_customers.csv",
        )


@dataclass
class Featurizer:
    """Codes of the plans and regions seen often enough in the train part (0: unknown, 1:
    missing), the mean charge of each plan, and the ratios the model sees."""

    plans: list[str]
    regions: list[str]
    charge: dict[str, float]

    @classmethod
    def fitted(cls, train: pd.DataFrame, min_count: int) -> Featurizer:
        def vocabulary(values: pd.Series) -> list[str]:
            counts = values.value_counts()
            return sorted(str(v) for v in counts[counts >= min_count].index)

        plans = vocabulary(train["plan"])
        charge = train.groupby("plan")["monthly_charge"].mean()
        return cls(plans, vocabulary(train["region"]), {p: float(charge[p]) for p in plans})

    def transform(self, rows: pa.Table) -> Features:
        frame = rows.to_pandas()

        def codes(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
            found = {v: i + 2 for i, v in enumerate(vocabulary)}
            return np.array(
                [1 if v is None or v != v else found.get(v, 0) for v in values], dtype=np.int16
            )

        plan = codes(frame["plan"], self.plans)
        mean_charge = frame["plan"].map(self.charge).astype("float64")
        tenure = frame["tenure_months"].astype("float32")
        x = pd.DataFrame(
            {
                "plan": plan,
                "region": codes(frame["region"], self.regions),
                "tenure_months": tenure,
                "monthly_charge": frame["monthly_charge"].astype("float32"),
                "support_calls": frame["support_calls"].astype("float32"),
                "calls_per_year": (frame["support_calls"] * 12 / (tenure + 1)).astype("float32"),
                "charge_per_plan": (frame["monthly_charge"] / mean_charge).astype("float32"),
            }
        )
        return Features(x[FEATURES], {"unknown_plan": plan == 0})

    def flags(self, rows: pa.Table) -> dict[str, np.ndarray]:
        return self.transform(rows).flags  # the features are a few codes and ratios

    def warm_up(self) -> None:
        """Nothing to build: a request only maps a few codes."""

    def example(self) -> dict[str, Any]:
        return {
            "plan": self.plans[0],
            "region": None,
            "tenure_months": 12,
            "monthly_charge": 30.0,
            "support_calls": 1,
        }

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(
            {"plans": self.plans, "regions": self.regions, "charge": self.charge}, folder / FILE
        )

    @classmethod
    def load(cls, folder: Path) -> Featurizer:
        try:
            spec = json.loads((folder / FILE).read_text(encoding="utf-8"))
            return cls(spec["plans"], spec["regions"], spec["charge"])
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"{folder / FILE}: not a toy featurizer ({err})") from None


def fit(parts: Mapping[str, Path], settings: Preprocess, out: Any) -> None:
    """The featurizer of the train part, and the features of every part."""
    tables = {part: read_parquet(path) for part, path in parts.items()}
    featurizer = Featurizer.fitted(tables["train"].to_pandas(), settings.min_category_count)
    featurizer.save(out.featurizer)
    for part, table in tables.items():
        found = featurizer.transform(table)
        out.features(part, found.x, table["churned"].to_numpy())
