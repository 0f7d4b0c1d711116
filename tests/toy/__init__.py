"""A second problem, to prove the loop's interface: will a customer of a subscription service
churn? Its own tables, synthetic data, features and request schema, through the same stages,
gate, bundle, service and monitor as KKBox, with no edit to cd4ml (tests/e2e/test_toy_problem.py).

It is what docs/adapt.md walks through: a problem is a package that builds one PROBLEM. This one
lives with the tests (it is a proof, not a product) and borrows KKBox's model kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from cd4ml.contract import Column, Contract, Table, ge, in_range, isin
from cd4ml.io import UserError
from cd4ml.problem import discover_kinds
from tests.toy import churn

CUSTOMERS = "customers.csv"
NEW_CUSTOMERS = "new_customers.csv"
TRUTH = "customers_truth.csv"

_FIELDS = {
    "plan": Column(pa.string(), categories=churn.PLANS),
    "region": Column(pa.string(), nullable=True, categories=churn.REGIONS),
    "tenure_months": Column(pa.int16(), rules=(ge(0, error="must be >= 0"),)),
    "monthly_charge": Column(
        pa.float32(), rules=(in_range(0, 1000, error="must be in [0, 1000]"),)
    ),
    "support_calls": Column(pa.int16(), rules=(ge(0, error="must be >= 0"),)),
}

CONTRACT = Contract(
    tables={
        CUSTOMERS: Table(
            {
                "customer_id": Column(pa.string(), unique=True),
                **_FIELDS,
                "churned": Column(pa.int8(), rules=(isin([0, 1], error="must be 0 or 1"),)),
            }
        ),
        NEW_CUSTOMERS: Table({"id": Column(pa.int32(), unique=True), **_FIELDS}),
        TRUTH: Table({"target_probability": Column(pa.float64())}, required=False),
    },
    examples=CUSTOMERS,
    target="churned",
    batch=NEW_CUSTOMERS,
    id="id",
    truth=TRUTH,
)


class Customer(BaseModel):
    """One customer to score."""

    model_config = ConfigDict(extra="ignore")

    plan: str = Field(min_length=1, description="basic, plus or pro")
    region: str | None = Field(description="where the customer lives")
    tenure_months: int = Field(ge=0, description="months since the customer signed up")
    monthly_charge: float = Field(ge=0, description="what the customer pays a month")
    support_calls: int = Field(ge=0, description="calls to support in the last quarter")


class Churn:
    """The problem (cd4ml.problem.Problem)."""

    name = "toy-churn"
    description = "Probability that a customer cancels the subscription this quarter."
    contract = CONTRACT
    Row = Customer
    flags = ("unknown_plan",)
    private = ()  # a Customer row names no one (its id is the caller's `id`)
    slice_columns = ("plan",)  # the gate compares the models on each plan's rows
    scales = tuple(churn.SCALES)
    sections: Mapping[str, type[BaseModel]] = {
        "generate": churn.Generate,
        "preprocess": churn.Preprocess,
    }

    @property
    def kinds(self) -> Mapping[str, Any]:
        return discover_kinds("kkbox.kinds")

    def synthesize(self, out: Path, scale: str, settings: churn.Generate) -> None:
        churn.write(out, churn.SCALES[scale], settings)

    def download(self, out: Path) -> None:
        raise UserError("the toy problem has no real data: `make data` makes its sample")

    def fit(self, data: Path, parts: Mapping[str, Path], settings: Any, out: Any) -> None:
        churn.fit(parts, settings, out)

    def plan(self, settings: Any) -> None:
        return None

    def load_featurizer(self, folder: Path) -> churn.Featurizer:
        return churn.Featurizer.load(folder)

    def slices(self, x: pd.DataFrame) -> dict[str, np.ndarray]:
        new = np.asarray(x["tenure_months"]) < 6
        return {"new_customer": new, "tenured": ~new}


PROBLEM = Churn()
