"""The `tfs-*` custom attributes, read as SageMaker's front end reads them."""

from __future__ import annotations

from polyhost.stacks.tensorflow.attributes import TfsAttributes, parse_attributes


def test_parse_attributes() -> None:
    assert parse_attributes(None) == TfsAttributes()
    assert parse_attributes("") == TfsAttributes()
    parsed = parse_attributes("tfs-model-name=mnist,tfs-model-version=2, tfs-method=classify")
    assert parsed == TfsAttributes("mnist", "2", "classify")
    assert parsed.effective_method == "classify"


def test_other_attributes_are_ignored() -> None:
    parsed = parse_attributes("trace=abc, tfs-model-name=m,priority=high,tfs-bogus=x=y")
    assert parsed == TfsAttributes(model_name="m")
    assert parsed.effective_method == "predict"
