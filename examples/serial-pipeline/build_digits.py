"""Fit the pipeline's two scikit-learn steps on the digits data and pack three model.tar.gz.

    preprocess.tar.gz    model.joblib (StandardScaler)        + code/inference.py (transform)
    model.tar.gz         model.joblib (LogisticRegression)      default handlers: predict
    postprocess.tar.gz   labels.json  (class number -> name)  + code/inference.py (names)

scikit-learn's `load_digits` (8x8 images, 64 features, ships with scikit-learn) is split into
training and held-out rows; the held-out rows are written as `test.csv` with `test_labels.json`
for the client to send and score.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LABEL_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Built:
    preprocess: Path
    model: Path
    postprocess: Path
    test_csv: Path
    test_labels: list[str]
    local_accuracy: float


def _pack(archive: Path, members: dict[str, Path]) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for name, source in members.items():
            tar.add(source, arcname=name)
    return archive


def build(work: Path, *, test_fraction: float = 0.2, seed: int = 0) -> Built:
    """Fit, evaluate locally, and write the three archives and the test rows into `work`."""
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data,
        digits.target,
        test_size=test_fraction,
        random_state=seed,
        stratify=digits.target,
    )
    scaler = StandardScaler().fit(x_train)
    classifier = LogisticRegression(max_iter=1000).fit(scaler.transform(x_train), y_train)
    local_accuracy = float(classifier.score(scaler.transform(x_test), y_test))

    staging = work / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    joblib.dump(scaler, staging / "scaler.joblib")
    joblib.dump(classifier, staging / "classifier.joblib")
    (staging / "labels.json").write_text(json.dumps(list(LABEL_NAMES)))

    test_csv = work / "test.csv"
    np.savetxt(test_csv, x_test, delimiter=",", fmt="%g")
    test_labels = [LABEL_NAMES[number] for number in y_test]
    (work / "test_labels.json").write_text(json.dumps(test_labels))
    return Built(
        preprocess=_pack(
            work / "preprocess.tar.gz",
            {
                "model.joblib": staging / "scaler.joblib",
                "code/inference.py": HERE / "preprocess" / "inference.py",
            },
        ),
        model=_pack(work / "model.tar.gz", {"model.joblib": staging / "classifier.joblib"}),
        postprocess=_pack(
            work / "postprocess.tar.gz",
            {
                "labels.json": staging / "labels.json",
                "code/inference.py": HERE / "postprocess" / "inference.py",
            },
        ),
        test_csv=test_csv,
        test_labels=test_labels,
        local_accuracy=local_accuracy,
    )
