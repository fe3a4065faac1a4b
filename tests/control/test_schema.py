"""The service model as polyhost reads it: the shapes, the cache, and the regex dialect."""

from __future__ import annotations

from pathlib import Path

from polyhost.control.schema import load_schema, project
from polyhost.control.service import OPERATIONS
from polyhost.control.validation import compiled


def test_every_pattern_of_the_served_operations_is_checked() -> None:
    """A pattern Python cannot read would silently go unchecked: there must be none."""
    schema = load_schema(OPERATIONS)
    patterns = set()
    for operation in OPERATIONS:
        pending = [schema.input(operation)]
        seen = set()
        while pending:
            shape = pending.pop()
            if shape is None or shape.name in seen:
                continue
            seen.add(shape.name)
            if shape.pattern:
                patterns.add(shape.pattern)
            names = [*shape.members.values(), shape.member, shape.key, shape.value]
            pending += [schema.shape(n) for n in names if n]
    assert patterns
    assert [p for p in patterns if compiled(p) is None] == []


def test_the_tag_pattern_takes_letters_numbers_and_separators_of_any_script() -> None:
    regex = compiled("([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)")
    assert regex is not None
    for good in ("team", "Ключ 1", "名前", "a_b.c:d/e=f+g-h@i", "x\u00a0y", "٣"):
        assert regex.fullmatch(good), good
    for bad in ("semi;colon", "tab\there", "new\nline", "quote'", "emoji\U0001f600"):
        assert regex.fullmatch(bad) is None, bad


def test_the_cache_gives_the_same_schema(tmp_path: Path) -> None:
    fresh = load_schema(OPERATIONS, cache_dir=tmp_path)
    (cached_file,) = tmp_path.iterdir()
    cached = load_schema(OPERATIONS, cache_dir=tmp_path)
    for operation in OPERATIONS:
        assert cached.input(operation) == fresh.input(operation)
        assert cached.output(operation) == fresh.output(operation)
    assert cached.all_operations == fresh.all_operations
    cached_file.write_text("{broken", encoding="utf-8")
    assert load_schema(OPERATIONS, cache_dir=tmp_path).input("CreateModel") == fresh.input(
        "CreateModel"
    )


def test_project_keeps_only_known_members() -> None:
    schema = load_schema(["CreateModel", "DescribeModel"])
    shape = schema.input("CreateModel")
    assert shape is not None
    given = {
        "ModelName": "m",
        "Unknown": 1,
        "ExecutionRoleArn": None,
        "PrimaryContainer": {"Image": "i", "Extra": True, "Environment": {"A": "1"}},
        "Tags": [{"Key": "k", "Value": "v", "Other": 0}],
    }
    assert project(schema, shape, given) == {
        "ModelName": "m",
        "PrimaryContainer": {"Image": "i", "Environment": {"A": "1"}},
        "Tags": [{"Key": "k", "Value": "v"}],
    }
    output = schema.output("DescribeModel")
    assert output is not None
    assert "Tags" not in project(schema, output, given)
