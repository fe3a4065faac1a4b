"""The fast JSON paths give exactly what the stdlib path gives, or step aside (None)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyhost.stacks.toolkit import codecs, fastjson
from polyhost.stacks.toolkit.context import Context
from polyhost.stacks.toolkit.server import InvocationError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types (1 is not 1.0 here), NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_loads_gives_the_stdlib_value(value: Any, as_bytes: bool) -> None:
    text = json.dumps(value)
    data: bytes | str = text.encode() if as_bytes else text
    assert _same(fastjson.loads(data), json.loads(data))


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "[Infinity, -Infinity]",
        "[1e400]",
        "[18446744073709551616]",
        "[-9223372036854775809, 1]",
        '"\\ud800"',
        "[" * 900 + "]" * 900,
        "[0.12345678901234567891234]",
    ],
)
def test_loads_leaves_what_orjson_reads_otherwise_to_the_stdlib(text: str) -> None:
    got, expected = fastjson.loads(text), json.loads(text)
    if text.startswith("[["):  # too deep for _same's recursion: compare the text back
        assert json.dumps(got) == json.dumps(expected)
    else:
        assert _same(got, expected)


@pytest.mark.parametrize("text", ["", "[1,", "{'a': 1}", '["\x00"]', "[1] x", "[1] [2]"])
def test_loads_raises_the_stdlib_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        fastjson.loads(text)
    assert str(got.value) == str(expected.value)


dense_arrays = st.lists(st.integers(1, 4), min_size=1, max_size=4).flatmap(
    lambda shape: st.tuples(
        st.just(tuple(shape)),
        st.lists(
            st.one_of(
                st.integers(-(10**18) + 1, 10**18 - 1),
                st.floats(allow_nan=False, allow_infinity=False, width=32),
                st.floats(allow_nan=False, allow_infinity=False),
            ),
            min_size=math.prod(shape),
            max_size=math.prod(shape),
        ),
        st.sampled_from([(", ", ": "), (",", ":"), (" ,\n ", " : ")]),
    )
)


@settings(max_examples=300, deadline=None)
@given(dense_arrays)
def test_dense_arrays_read_as_asarray_reads_the_parsed_lists(case: Any) -> None:
    shape, flat, separators = case
    nested = np.array(flat, dtype=object).reshape(shape).tolist()
    text = json.dumps(nested, separators=separators[:2]).encode()
    dense = fastjson.dense_array(text)
    assert dense is not None
    expected = np.asarray(json.loads(text))
    assert dense.array.dtype == expected.dtype and dense.array.shape == expected.shape
    assert np.array_equal(dense.array, expected)
    assert _same(dense.value(), json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        b"[]",
        b"[[], []]",
        b"[[1, 2], [3]]",
        b"[[1, 2], [3, 4, 5]]",
        b"[[1], [2], [3, 4]]",
        b"[[1, 2], [3], [4, 5, 6]]",
        b"[1[,2],[3,]4]",
        b"[[1, 2] 3]",
        b"[[1, 2], [3, 4]] 5",
        b"5 [1]",
        b"[1 2]",
        b"[1, , 2]",
        b"[1, 2,]",
        b"[,1]",
        b"[[1], 2]",
        b"[1, [2]]",
        b"[1.]",
        b"[.5]",
        b"[+1]",
        b"[01]",
        b"[1e]",
        b"[--1]",
        b"[NaN]",
        b"[1, true]",
        b'[1, "2"]',
        b"[1, null]",
        b"[{}]",
        b"[1234567890123456789]",
        b"[[1, 2], [3, 4]",
        b"[[1, 2], 3, 4]]",
        b"\x0c[1]",
    ],
)
def test_anything_else_is_left_to_the_usual_path(text: bytes) -> None:
    assert fastjson.dense_array(text) is None
    assert fastjson.read_document(text, ("instances",), min_bytes=0) is None


def test_read_document_takes_the_envelopes_it_is_told() -> None:
    read = fastjson.read_document
    found = read(b' {"instances": [[1, 2]]} ', ("instances", "inputs"), min_bytes=0)
    assert found is not None and found[0] == "instances" and found[1].array.tolist() == [[1, 2]]
    found = read(b'{"signature_name": "s", "inputs": [1.5]}', ("inputs",), ("signature_name",), 0)
    assert found is not None and found[0] == "inputs" and found[2] == {"signature_name": "s"}
    found = read(
        b'{"instances": [1], "signature_name": "t"}', ("instances",), ("signature_name",), 0
    )
    assert found is not None and found[2] == {"signature_name": "t"}
    for body in (
        b'{"instances": [1]}',  # no keys allowed: only a bare array
        b'{"other": [1]}',
        b'{"instances": [1], "signature_name": "t"}',  # an extra not allowed
        b'{"instances": [1], "instances": [2]}',
        b'{"signature_name": "a", "instances": [1], "signature_name": "b"}',
        b'{"signature_name": "a\\"b", "instances": [1]}',
        b'{"signature_name": "[x]", "instances": [1]}',
        b'{"instances": [1]',
        b'{"instances": [1]} {}',
    ):
        keys = () if body == b'{"instances": [1]}' else ("instances",)
        extras = ("signature_name",) if b"signature_name" in body and b"[x]" in body else ()
        assert read(body, keys, extras, 0) is None, body
    assert read(b"[1, 2]", ("instances",)) is None  # below min_bytes: the usual path is faster


def _big(rows: int = 40) -> list[list[float]]:
    return [[round(0.1 * (r * 64 + c), 3) for c in range(64)] for r in range(rows)]


@pytest.mark.parametrize("envelope", [None, "instances", "inputs"])
def test_codecs_dense_path_matches_the_parsed_path(envelope: str | None) -> None:
    rows = _big()
    body = json.dumps(rows if envelope is None else {envelope: rows})
    assert len(body) > fastjson.DENSE_MIN_BYTES
    context = Context("/tmp")
    decoded = codecs.decode_instances(body, codecs.JSON, context)
    assert decoded.dtype == np.float64 and np.array_equal(decoded, np.asarray(rows))
    answer, _ = codecs.encode_in_kind(np.array([1]), codecs.JSON, codecs.JSON, context)
    assert answer == (b"[1]" if envelope is None else b'{"predictions": [1]}')
    assert np.array_equal(codecs.decode_json(json.dumps(rows)), np.asarray(rows))


def test_codecs_big_bodies_keep_their_messages() -> None:
    ragged = _big()
    ragged[-1] = ragged[-1][:-1]
    for body, fragment in (
        (json.dumps({"instances": ragged}), "not a rectangular array"),
        (json.dumps({"instances": _big(), "extra": 1}), 'keys besides "instances"'),
        (json.dumps([*_big(), [{"a": 1}] * 64]), "JSON object|mixes numbers"),
    ):
        with pytest.raises(InvocationError, match=fragment):
            codecs.decode_instances(body, codecs.JSON)
