"""`polyhost/huggingface`: tiny randomly initialised models built here (no download), served by
each task's pipeline, as a program and through the handlers directly."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("USE_TF", "0")  # before transformers: PyTorch only
os.environ["HF_HUB_OFFLINE"] = "1"

import torch
import transformers
from PIL import Image

from polyhost.stacks.huggingface import handlers
from polyhost.stacks.toolkit.server import InvocationError
from tests.stacks.conftest import StackProcess, start_all, stop_all

MODULE = "polyhost.stacks.huggingface"
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "paris",
    "is",
    "capital",
    "of",
    "france",
    "good",
    "bad",
    "movie",
    "great",
    "terrible",
]
SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "max_position_embeddings": 64,
}

HANDLERS = """
import json
from transformers import pipeline

def model_fn(model_dir):
    return pipeline("text-classification", model=model_dir, device=-1)

def transform_fn(model, body, content_type, accept):
    text = json.loads(body)["text"]
    return json.dumps({"label": model(text)[0]["label"], "by": "transform_fn"})
"""


def _tokenizer(folder: Path) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return transformers.BertTokenizer(str(vocab))


def _save(folder: Path, model: Any, tokenizer: Any) -> Path:
    torch.manual_seed(0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _bert(folder: Path, kind: str, **config: Any) -> Path:
    tokenizer = _tokenizer(folder)
    settings = transformers.BertConfig(vocab_size=len(tokenizer), **SMALL, **config)
    torch.manual_seed(0)
    model = getattr(transformers, kind)(settings)
    return _save(folder, model, tokenizer)


def _bart(folder: Path) -> Path:
    tokenizer = _tokenizer(folder)
    ids = tokenizer.convert_tokens_to_ids(["[PAD]", "[CLS]", "[SEP]"])
    settings = transformers.BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=37,
        decoder_ffn_dim=37, max_position_embeddings=64, pad_token_id=ids[0], bos_token_id=ids[1],
        eos_token_id=ids[2], decoder_start_token_id=ids[1], forced_eos_token_id=ids[2],
    )  # fmt: skip
    torch.manual_seed(0)
    return _save(folder, transformers.BartForConditionalGeneration(settings), tokenizer)


def _vit(folder: Path) -> Path:
    settings = transformers.ViTConfig(
        image_size=32, patch_size=8, num_channels=3, **SMALL, id2label={0: "cat", 1: "dog"},
        label2id={"cat": 0, "dog": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.ViTForImageClassification(settings).save_pretrained(folder)
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("hf")
    labels = {"id2label": {0: "NEG", 1: "POS"}, "label2id": {"NEG": 0, "POS": 1}}
    nli = {
        "id2label": {0: "entailment", 1: "neutral", 2: "contradiction"},
        "label2id": {"entailment": 0, "neutral": 1, "contradiction": 2},
    }
    return {
        "text-classification": _bert(base / "cls", "BertForSequenceClassification", **labels),
        "token-classification": _bert(base / "ner", "BertForTokenClassification", **labels),
        "question-answering": _bert(base / "qa", "BertForQuestionAnswering"),
        "fill-mask": _bert(base / "mlm", "BertForMaskedLM"),
        "feature-extraction": _bert(base / "features", "BertModel"),
        "zero-shot-classification": _bert(base / "nli", "BertForSequenceClassification", **nli),
        "text-generation": _bert(base / "gen", "BertLMHeadModel", is_decoder=True),
        "summarization": _bart(base / "summary"),
        "image-classification": _vit(base / "vit"),
    }


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


REQUESTS: dict[str, Any] = {
    "text-classification": {"inputs": "good movie"},
    "token-classification": {"inputs": "the cat sat on the mat"},
    "question-answering": {
        "inputs": {"question": "the capital of france", "context": "paris is the capital of france"}
    },
    "fill-mask": {"inputs": "the cat sat on the [MASK]"},
    "feature-extraction": {"inputs": "the cat"},
    "zero-shot-classification": {
        "inputs": "a great movie",
        "parameters": {"candidate_labels": ["good", "bad"]},
    },
    "text-generation": {
        "inputs": "the cat",
        "parameters": {"max_new_tokens": 3, "do_sample": False},
    },
    "summarization": {"inputs": "the cat sat on the mat", "parameters": {"max_new_tokens": 3}},
}


def _check(task: str, answer: Any) -> None:
    if task == "text-classification":
        assert answer[0]["label"] in ("NEG", "POS") and 0 <= answer[0]["score"] <= 1
    elif task == "token-classification":
        assert isinstance(answer, list) and all("entity" in item for item in answer)
    elif task == "question-answering":
        assert set(answer) >= {"answer", "score", "start", "end"}
    elif task == "fill-mask":
        assert len(answer) == 5 and all(item["token_str"] for item in answer)
    elif task == "feature-extraction":
        assert len(answer[0][0]) == 32  # one vector of the hidden size per token
    elif task == "zero-shot-classification":
        assert sorted(answer["labels"]) == ["bad", "good"]
    elif task == "text-generation":
        assert answer[0]["generated_text"].startswith("the cat")
    elif task == "summarization":
        assert isinstance(answer[0]["summary_text"], str)
    elif task == "image-classification":
        assert {item["label"] for item in answer} == {"cat", "dog"}


@pytest.mark.parametrize("task", [*REQUESTS, "image-classification"])
def test_every_task_through_the_default_handlers(
    task: str, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TASK", task)
    pipeline = handlers.default_model_fn(str(models[task]))
    if task == "image-classification":
        data = handlers.default_input_fn(_png(), "image/png")
    else:
        data = handlers.default_input_fn(json.dumps(REQUESTS[task]), "application/json")
    body, content_type = handlers.default_output_fn(
        handlers.default_predict_fn(data, pipeline), "application/json"
    )
    assert content_type == "application/json"
    _check(task, json.loads(body))


def test_the_task_is_inferred_from_the_architecture(models: dict[str, Path]) -> None:
    assert handlers.infer_task(str(models["text-classification"])) == "text-classification"
    assert handlers.infer_task(str(models["fill-mask"])) == "fill-mask"
    assert handlers.infer_task(str(models["image-classification"])) == "image-classification"


def test_a_hub_id_is_refused_saying_no_hub_is_reachable(tmp_path: Path) -> None:
    with pytest.raises(handlers.ModelLoadError, match="reaches no model hub"):
        handlers.model_folder(str(tmp_path), {"HF_MODEL_ID": "distilbert-base-uncased"})


def test_csv_answer_and_refusals(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TASK", "text-classification")
    pipeline = handlers.default_model_fn(str(models["text-classification"]))
    data = handlers.default_input_fn("good movie\nbad movie\n", "text/csv")
    body, content_type = handlers.default_output_fn(
        handlers.default_predict_fn(data, pipeline), "text/csv"
    )
    lines = body.decode().splitlines()
    assert content_type == "text/csv" and lines[0] == "label,score" and len(lines) == 3
    with pytest.raises(InvocationError) as raised:
        handlers.default_input_fn("{oops", "application/json")
    assert raised.value.status == 400
    with pytest.raises(InvocationError) as raised:
        handlers.default_input_fn(b"not a png", "image/png")
    assert raised.value.status == 400
    with pytest.raises(InvocationError) as raised:
        handlers.default_input_fn(b"x", "application/x-npy")
    assert raised.value.status == 415


@pytest.fixture(scope="module")
def stacks(
    models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, StackProcess]]:
    base = tmp_path_factory.mktemp("hf-stacks")
    scripted = base / "scripted"
    (scripted / "code").mkdir(parents=True)
    for item in models["text-classification"].iterdir():
        (scripted / item.name).write_bytes(item.read_bytes())
    (scripted / "code" / "inference.py").write_text(HANDLERS)
    image = (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
        "2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04"
    )
    processes = {
        "root": StackProcess(
            MODULE,
            models["text-classification"],
            env={"HF_TASK": "text-classification"},
            args=("--sagemaker-image", image),
        ),
        "scripted": StackProcess(MODULE, scripted),
    }
    start_all(processes)
    processes["hub"] = StackProcess(
        MODULE, models["fill-mask"], env={"HF_MODEL_ID": "bert-base-uncased"}
    ).launch()
    yield processes
    stop_all(processes.values())


def test_the_program_serves_inputs_and_parameters(stacks: dict[str, StackProcess]) -> None:
    answer = stacks["root"].invoke(json.dumps({"inputs": ["good movie", "bad movie"]}))
    assert answer.status == 200, answer.body
    assert [item["label"] in ("NEG", "POS") for item in answer.json()] == [True, True]
    answer = stacks["root"].invoke(json.dumps({"inputs": "good", "parameters": {"top_k": 2}}))
    assert answer.status == 200 and len(answer.json()) == 2, answer.body
    answer = stacks["root"].invoke("{oops")
    assert answer.status == 400 and "not valid JSON" in answer.json()["message"]


def test_the_users_transform_fn(stacks: dict[str, StackProcess]) -> None:
    answer = stacks["scripted"].invoke(json.dumps({"text": "good movie"}))
    assert answer.status == 200, answer.body
    assert answer.json()["by"] == "transform_fn"


def test_the_log_names_the_transformers_version(stacks: dict[str, StackProcess]) -> None:
    line = f"names transformers 4.37.0; transformers {transformers.__version__} serves it"
    assert line in stacks["root"].output()


def test_a_hub_model_id_fails_the_start_saying_why(stacks: dict[str, StackProcess]) -> None:
    assert stacks["hub"].wait_exit() == 1
    assert "reaches no model hub" in stacks["hub"].output()
