"""The Serial pipeline example against a real polyhost server running three polyhost/sklearn.

`run_pipeline.py` runs once as a user runs it (building the archives, deploying the pipeline
with boto3, scoring the held-out digits); the tests then check what it left: the model as
SageMaker's PipelineModel creates it, answers per Accept, and errors naming the container.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.examples.loader import example_module
from tests.support.errors import client_error
from tests.support.server import PolyhostProcess, free_port

EXAMPLE = "serial-pipeline"
pipeline = example_module(EXAMPLE, "pipeline")
run_pipeline = example_module(EXAMPLE, "run_pipeline")


@dataclass(frozen=True)
class Deployed:
    output: str
    exit_code: int
    work: Path


@pytest.fixture(scope="module")
def deployed(server: PolyhostProcess, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    work = tmp_path_factory.mktemp("pipeline")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = run_pipeline.main(["--url", server.url, "--work", str(work)])
    return Deployed(stdout.getvalue(), code, work)


def _accuracy(output: str, prefix: str) -> float:
    line = next(line for line in output.splitlines() if line.startswith(prefix))
    return float(line.split(prefix, 1)[1].split("%", 1)[0]) / 100


def test_run_pipeline_scores_the_held_out_digits(deployed: Deployed) -> None:
    assert deployed.exit_code == 0, deployed.output
    assert "digits-pipeline: InService (3 containers, Serial)" in deployed.output
    local = _accuracy(deployed.output, "fitted scaler + logistic regression: local accuracy ")
    served = _accuracy(deployed.output, "accuracy ")
    assert served > 0.9
    # The pipeline computes what the fitted scikit-learn objects compute locally.
    assert abs(served - local) < 0.01, deployed.output


def test_archives_keep_scripts_in_code(deployed: Deployed) -> None:
    def names(archive: str) -> list[str]:
        with tarfile.open(deployed.work / archive) as tar:
            return sorted(tar.getnames())

    assert names("preprocess.tar.gz") == ["code/inference.py", "model.joblib"]
    assert names("model.tar.gz") == ["model.joblib"]
    assert names("postprocess.tar.gz") == ["code/inference.py", "labels.json"]


def test_model_is_a_serial_pipeline_like_pipelinemodel_makes(
    deployed: Deployed, sagemaker: Any
) -> None:
    model = sagemaker.describe_model(ModelName=pipeline.PIPELINE_NAME)
    assert len(model["Containers"]) == 3
    assert model.get("InferenceExecutionConfig", {"Mode": "Serial"}) == {"Mode": "Serial"}
    assert [c["Image"] for c in model["Containers"]] == ["polyhost/sklearn"] * 3


def test_answers_follow_the_clients_accept(deployed: Deployed, runtime: Any) -> None:
    rows = (deployed.work / "test.csv").read_text().splitlines()[:4]
    truth = json.loads((deployed.work / "test_labels.json").read_text())[:4]
    names, _ = pipeline.predict(runtime, "\n".join(rows))
    assert names == truth
    answer = runtime.invoke_endpoint(
        EndpointName=pipeline.PIPELINE_NAME,
        ContentType="text/csv",
        Accept="text/csv",
        Body="\n".join(rows),
    )
    assert answer["ContentType"] == "text/csv"
    assert answer["Body"].read().decode().splitlines() == truth


def test_a_bad_row_names_the_failing_container(deployed: Deployed, runtime: Any) -> None:
    with pytest.raises(runtime.exceptions.ModelError) as raised:
        runtime.invoke_endpoint(
            EndpointName=pipeline.PIPELINE_NAME, ContentType="text/csv", Body="1,2,3\n"
        )
    message = client_error(raised).message
    assert "each row needs 64 values, not 3" in message
    assert raised.value.response["OriginalStatusCode"] == 400


def test_without_a_server_it_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_pipeline.main(["--url", f"http://127.0.0.1:{free_port()}", "--work", str(tmp_path)])
    assert code == 1
    assert "no polyhost server answers" in capsys.readouterr().err
