"""The pyfunc model's request handling (`score_request`), in process, on the synthetic live detector."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from tests.core.live.test_live_core import _live
from vad_core.scoring.rows import row_keys_for
from vad_pipeline.serving.package import model_signature, pip_requirements
from vad_pipeline.serving.pyfunc_model import OUTPUT_COLUMNS, score_request

KEYS = ["video_id", "clip", "start_frame", "end_frame", "tile"]


def _request(rows: pd.DataFrame, x: np.ndarray) -> pd.DataFrame:
    return rows[KEYS].assign(feature=list(x))


def test_rows_with_clip_keys_get_row_and_clip_scores_in_request_order(one_torch_thread) -> None:
    live, rows, x = _live()
    order = np.random.default_rng(0).permutation(len(rows))[:60]  # any order, any subset of rows
    sub, xs = rows.iloc[order].reset_index(drop=True), x[order]
    out = score_request(live, _request(sub, xs))
    assert list(out.columns) == list(OUTPUT_COLUMNS) and len(out) == len(sub)
    expected = live.detector.score_new(xs, sub["tile"].to_numpy(np.int64), row_keys_for(sub))
    np.testing.assert_allclose(out["score"], expected, rtol=0, atol=1e-12)
    # Each row carries its clip's max over the clip's rows in the request, the arg-max tile, the decision.
    for _, group in sub.assign(score=out["score"]).groupby(["video_id", "clip"]):
        mine = out.loc[group.index]
        assert (mine["clip_score"] == group["score"].max()).all()
        assert (mine["clip_tile"] == group.loc[group["score"].idxmax(), "tile"]).all()
    assert (out["threshold"] == live.rule.threshold).all()
    assert (out["anomalous"] == (out["clip_score"] > live.rule.threshold)).all()


def test_rows_without_keys_are_keyed_by_position(one_torch_thread) -> None:
    live, rows, x = _live()
    out = score_request(live, pd.DataFrame({"tile": rows["tile"][:5], "feature": list(x[:5])}))
    assert list(out.columns) == ["score"]
    keys = pd.DataFrame({"video_id": [""] * 5, "clip": range(5), "tile": rows["tile"][:5].to_numpy()})
    np.testing.assert_allclose(out["score"], live.detector.score_new(x[:5], keys["tile"], row_keys_for(keys)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.drop(columns=["clip"]), "clip keys are given partly"),
        (lambda r: r.assign(feature=[f[:-1] for f in r["feature"]]), "has 31 values, the model takes 32"),
        (lambda r: r.assign(tile=r["tile"] + 10), "tile index out of range"),
        (lambda r: r.iloc[:0], "no rows"),
        (lambda r: r.assign(feature=[np.full(32, np.nan)] * len(r)), "not finite"),
    ],
)
def test_a_request_that_breaks_the_contract_is_an_invalid_parameter(change, message) -> None:
    live, rows, x = _live()
    with pytest.raises(MlflowException, match=message) as err:
        score_request(live, change(_request(rows, x)))
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"  # the scoring server answers 400


def test_signature_and_requirements_are_explicit() -> None:
    signature = model_signature()
    assert signature.inputs.input_names() == ["tile", "feature", "video_id", "clip", "start_frame", "end_frame"]
    assert [c.name for c in signature.inputs.inputs if c.required] == ["tile", "feature"]
    assert signature.outputs.input_names() == list(OUTPUT_COLUMNS)
    reqs = pip_requirements()
    assert [r.split("==")[0] for r in reqs] == ["mlflow", "torch", "numpy", "pandas", "pyarrow"]
    assert all("+" not in r for r in reqs)  # no local version labels (torch's "+cpu"): PyPI has none
