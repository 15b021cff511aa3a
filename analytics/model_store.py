"""Saving, loading and promoting `analytics.forecaster.LoadForecaster` models.

A saved model is a directory `<root>/<version>/` holding `model.skops` (the fitted estimator,
written with skops, never pickle) and `metadata.json`: the library versions it was trained with
(python, numpy, polars, scikit-learn, skops), the SHA-256 of `model.skops`, the training window,
the training data hash, the horizon and column, and the validation scores. `save` keeps the
`keep` most recent versions under the root and deletes older ones.

`load` refuses, with a `ModelLoadError` naming the file and the problem:

* a missing or unreadable metadata file;
* a model of another format (`analytics.forecaster.MODEL_FORMAT`: features and targets);
* a model trained with other library versions than the running ones;
* a `model.skops` whose SHA-256 differs from the metadata's (corrupted or tampered);
* a file skops cannot read (truncated);
* a file holding types outside `ALLOWED_TYPES` (skops' `get_untrusted_types`).

`promote` is the promotion rule: a candidate replaces the current model only when it beats it and
every naive baseline on the validation split, on both the MAE of the mean and the p90 pinball
loss.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import sklearn
import skops
import skops.io as sio

from analytics.forecaster import MODEL_FORMAT, LoadForecaster

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
DEFAULT_KEEP = 5
# the only types a model file may hold beyond what skops trusts by default
ALLOWED_TYPES = frozenset(
    {
        "analytics.forecaster.LoadForecaster",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    }
)
METRICS = ("mae", "pinball")


class ModelLoadError(ValueError):
    """A saved model that must not be used; the message names the file and the problem."""


def library_versions() -> dict[str, str]:
    """The versions a model must be loaded with: the ones it was trained with."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "polars": pl.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(
    model: LoadForecaster,
    root: Path | str,
    *,
    validation_scores: Mapping[str, float] | None = None,
    keep: int = DEFAULT_KEEP,
) -> Path:
    """Write `model` to a new version directory under `root`; return that directory."""
    if not hasattr(model, "mean_model_"):
        raise ValueError("only a fitted LoadForecaster can be saved")
    if keep < 1:
        raise ValueError("keep must be at least 1")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    directory = root / version
    directory.mkdir()
    model_path = directory / MODEL_FILE
    sio.dump(model, model_path)
    metadata: dict[str, Any] = {
        "format": model.format_,
        "versions": library_versions(),
        "model_sha256": _sha256(model_path),
        "column": model.column,
        "horizon_min": model.horizon_min,
        "params": model.get_params(),
        "training_window": list(model.train_window_),
        "training_series": model.n_series_,
        "training_rows": model.n_train_rows_,
        "data_hash": model.data_hash_,
        "validation_scores": dict(validation_scores or {}),
        "saved_at": datetime.now(UTC).isoformat(),
    }
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    for old in versions(root)[:-keep]:
        shutil.rmtree(old)
    return directory


def versions(root: Path | str) -> list[Path]:
    """The model directories under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / METADATA_FILE).is_file())


def read_metadata(directory: Path | str) -> dict[str, Any]:
    """The metadata of a saved model, or `ModelLoadError`."""
    path = Path(directory) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: unreadable model metadata ({exc})") from None
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{path}: model metadata is not a JSON object")
    return metadata


def load(directory: Path | str) -> LoadForecaster:
    """The model saved in `directory` (see the module docstring for what is refused)."""
    directory = Path(directory)
    meta_path = directory / METADATA_FILE
    model_path = directory / MODEL_FILE
    metadata = read_metadata(directory)
    running = library_versions()
    if metadata.get("format") != MODEL_FORMAT:
        raise ModelLoadError(
            f"{meta_path}: model format {metadata.get('format')!r}, but this proxflow reads "
            f"format {MODEL_FORMAT} (its features and targets changed); retrain the model"
        )
    saved = metadata.get("versions")
    if not isinstance(saved, dict):
        raise ModelLoadError(f"{meta_path}: no library versions recorded")
    differ = [
        f"{name} {saved.get(name)} (running {version})"
        for name, version in running.items()
        if saved.get(name) != version
    ]
    if differ:
        raise ModelLoadError(
            f"{model_path}: trained with other library versions: {', '.join(differ)}; "
            "retrain the model with the running versions"
        )
    if not model_path.is_file():
        raise ModelLoadError(f"{model_path}: model file missing")
    if _sha256(model_path) != metadata.get("model_sha256"):
        raise ModelLoadError(
            f"{model_path}: SHA-256 differs from the one in {meta_path.name}; "
            "the file is corrupted or was modified, refusing to load it"
        )
    try:
        untrusted = set(sio.get_untrusted_types(file=model_path))
        unexpected = sorted(untrusted - ALLOWED_TYPES)
        if unexpected:
            raise ModelLoadError(
                f"{model_path}: holds types outside the allow-list: {', '.join(unexpected)}"
            )
        model = sio.load(model_path, trusted=sorted(untrusted))
    except ModelLoadError:
        raise
    except Exception as exc:  # skops raises zipfile, json, attribute and type errors alike
        raise ModelLoadError(f"{model_path}: not a readable skops model ({exc!r})") from None
    if not isinstance(model, LoadForecaster):
        raise ModelLoadError(f"{model_path}: holds a {type(model).__name__}, not a LoadForecaster")
    return model


def load_latest(root: Path | str) -> LoadForecaster:
    """The most recent model under `root`."""
    found = versions(root)
    if not found:
        raise ModelLoadError(f"{root}: no saved model")
    return load(found[-1])


def _better(candidate: Mapping[str, float], other: Mapping[str, float]) -> bool:
    """Strictly lower on every metric of `METRICS` (a missing or NaN score never wins)."""
    for metric in METRICS:
        mine, theirs = candidate.get(metric, math.nan), other.get(metric, math.nan)
        if math.isnan(mine) or (not math.isnan(theirs) and not mine < theirs):
            return False
    return True


def promote(
    candidate_scores: Mapping[str, float],
    current_scores: Mapping[str, float] | None,
    baseline_scores: Mapping[str, Mapping[str, float]],
) -> bool:
    """True when the candidate beats the current model (if any) and every naive baseline, on the
    validation split's MAE of the mean and p90 pinball loss (all scored on the same split)."""
    if not baseline_scores:
        return False
    rivals = [*baseline_scores.values(), *([current_scores] if current_scores else [])]
    return all(_better(candidate_scores, rival) for rival in rivals)
