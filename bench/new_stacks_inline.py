"""The models of scenario 16 and its in-process references, run in a child process.

`python -m bench.new_stacks_inline COMMAND ...`:
  build-xgboost DIR          a Booster on scikit-learn's digits (64 features, 10 classes,
                             multi:softprob, 20 rounds of depth 4), saved as DIR/model.json
  build-huggingface DIR      a tiny random BERT (2 layers, hidden size 32) for
                             text-classification with a 22-word vocabulary, saved_pretrained
  bodies DIR                 the requests: xgboost-1.csv and xgboost-100.csv (digits rows),
                             huggingface-1.json `{"inputs": "..."}` and huggingface-100.json
                             `{"inputs": [100 short texts]}`
  xgboost DIR WORK N1 N100   N1 bare calls on one row, N100 decode + call + encode of the
  huggingface DIR WORK N1 N100  100-row body, in this one process; prints the milliseconds
                             of each as JSON: {"bare": [...], "bare_inplace": [...] (xgboost
                             only), "inline": [...]}

"Bare" is the library call alone on an already decoded row: `booster.predict(DMatrix(row))`
(and `booster.inplace_predict(row)`, what the stack calls) for xgboost, `pipeline(text)` for
Hugging Face. "Inline" is the least a program can do with the 100-row request: for xgboost
np.loadtxt of the CSV, inplace_predict and the scores joined as CSV lines; for Hugging Face
json.loads, the pipeline on the list and json.dumps. Both run on the threads the stacks use:
half the cores, at least one.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROWS = 100
MODEL = "model.json"
WORDS = [
    "the", "a", "cat", "dog", "sat", "on", "mat", "paris", "is", "capital", "of", "france",
    "good", "bad", "movie", "great", "terrible", "was", "not", "very", "film", "plot",
]  # fmt: skip


def _timed(step: Any, count: int) -> list[float]:
    # As the stacks after loading: the library's objects out of the collector's way. The
    # warm-up is long (a tenth of a second, at least 3 calls): xgboost's first DMatrix calls on
    # a fresh process are tens of times slower than later ones.
    gc.collect()
    gc.freeze()
    warm_until = time.perf_counter() + 0.1
    for index in range(1_000_000):
        step()
        if index >= 2 and time.perf_counter() > warm_until:
            break
    times = []
    for _ in range(count):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def _threads() -> int:
    return max(1, (os.cpu_count() or 1) // 2)


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("USE_TF", "0")
    os.environ.setdefault("USE_TORCH", "1")
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads()))


def _digits() -> tuple[Any, Any]:
    import numpy as np
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float32), data.target


def build_xgboost(folder: Path) -> None:
    import xgboost as xgb

    features, labels = _digits()
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 10, "max_depth": 4, "nthread": 1},
        xgb.DMatrix(features, label=labels),
        num_boost_round=20,
    )
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(folder / MODEL))  # the model dir's only file: the stack serves it


def build_huggingface(folder: Path) -> None:
    _offline()
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizer(str(vocab))
    config = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64, id2label={0: "NEG", 1: "POS"},
        label2id={"NEG": 0, "POS": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _texts() -> list[str]:
    import random

    chooser = random.Random(7)
    return [" ".join(chooser.choices(WORDS, k=chooser.randint(4, 10))) for _ in range(ROWS)]


def bodies(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    features, _ = _digits()

    def csv(rows: Any) -> str:
        return "".join(",".join(f"{value:g}" for value in row) + "\n" for row in rows)

    (folder / "xgboost-1.csv").write_text(csv(features[:1]), encoding="utf-8")
    (folder / "xgboost-100.csv").write_text(csv(features[:ROWS]), encoding="utf-8")
    texts = _texts()
    (folder / "huggingface-1.json").write_text(json.dumps({"inputs": texts[0]}), "utf-8")
    (folder / "huggingface-100.json").write_text(json.dumps({"inputs": texts}), "utf-8")


def run_xgboost(folder: Path, work: Path, bare_count: int, inline_count: int) -> dict[str, Any]:
    import io

    import numpy as np
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(folder / MODEL))
    booster.set_param({"nthread": _threads()})
    row = np.loadtxt(work / "xgboost-1.csv", delimiter=",", ndmin=2, dtype=np.float32)
    body = (work / "xgboost-100.csv").read_bytes()

    def inline() -> bytes:
        rows = np.loadtxt(io.BytesIO(body), delimiter=",", ndmin=2, dtype=np.float32)
        scores = booster.inplace_predict(rows, validate_features=False).tolist()
        return "\n".join(",".join(map(str, line)) for line in scores).encode()

    return {
        "bare": _timed(lambda: booster.predict(xgb.DMatrix(row)), bare_count),
        "bare_inplace": _timed(
            lambda: booster.inplace_predict(row, validate_features=False), bare_count
        ),
        "inline": _timed(inline, inline_count),
    }


def run_huggingface(folder: Path, work: Path, bare_count: int, inline_count: int) -> dict[str, Any]:
    _offline()
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(folder), device=-1)
    text = json.loads((work / "huggingface-1.json").read_text("utf-8"))["inputs"]
    body = (work / "huggingface-100.json").read_bytes()

    def inline() -> bytes:
        return json.dumps(classify(json.loads(body)["inputs"])).encode()

    return {
        "bare": _timed(lambda: classify(text), bare_count),
        "inline": _timed(inline, inline_count),
    }


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "build-xgboost":
        build_xgboost(Path(args[0]))
    elif command == "build-huggingface":
        build_huggingface(Path(args[0]))
    elif command == "bodies":
        bodies(Path(args[0]))
    elif command in ("xgboost", "huggingface"):
        run = run_xgboost if command == "xgboost" else run_huggingface
        print(json.dumps(run(Path(args[0]), Path(args[1]), int(args[2]), int(args[3]))))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
