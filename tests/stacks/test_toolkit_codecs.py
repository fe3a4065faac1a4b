"""The codecs on their own: every content type both ways, and the status of each refusal."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import scipy.sparse

from polyhost.stacks.toolkit import codecs
from polyhost.stacks.toolkit.context import Context
from polyhost.stacks.toolkit.server import InvocationError


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _status(call: object, *args: object) -> InvocationError:
    with pytest.raises(InvocationError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


ARRAY = np.array([[1.5, 2.0, -3.0], [4.0, 5.25, 6.0]], dtype=np.float32)


@pytest.mark.parametrize("accept", codecs.SUPPORTED)
def test_every_type_round_trips(accept: str) -> None:
    decoded = codecs.decode(codecs.encode(ARRAY, accept), accept)
    np.testing.assert_allclose(decoded, ARRAY)
    assert decoded.shape == ARRAY.shape


def test_json_and_csv_accept_str_bodies_and_media_parameters() -> None:
    assert codecs.decode("[[1, 2]]", "Application/JSON; charset=utf-8").tolist() == [[1, 2]]
    assert codecs.decode("1,2\n3,4\n", "text/csv").tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_csv_shapes_blanks_and_strings() -> None:
    assert codecs.decode(b"1,2,3", codecs.CSV).shape == (1, 3)
    with_blank = codecs.decode(b"1,,3\r\n4,5,6\r\n", codecs.CSV)
    assert np.isnan(with_blank[0, 1]) and with_blank[1, 2] == 6.0
    words = codecs.decode(b'"good movie",x\n"bad, boring",y\n', codecs.CSV)
    assert words.dtype.kind == "U" and words[1, 0] == "bad, boring"


def test_csv_encoding_one_value_per_line_and_short_floats() -> None:
    assert codecs.encode(np.array([1, 0, 7]), codecs.CSV) == b"1\n0\n7\n"
    assert codecs.encode(np.float32(0.1), codecs.CSV) == b"0.1\n"
    assert codecs.encode([[0.1, 2], [3, 4]], codecs.CSV) == b"0.1,2.0\n3.0,4.0\n"
    assert _status(codecs.encode, np.zeros((2, 2, 2)), codecs.CSV).status == 500


def test_json_encodes_numpy_values_lists_and_scalars() -> None:
    value = {"labels": np.array([1, 2]), "score": np.float32(0.5), "n": np.int64(3)}
    assert json.loads(codecs.encode(value, codecs.JSON)) == {
        "labels": [1, 2],
        "score": 0.5,
        "n": 3,
    }
    assert codecs.encode(7, codecs.JSON) == b"7"
    assert _status(codecs.encode, object(), codecs.JSON).status == 500


def test_npy_keeps_dtype_and_refuses_pickles() -> None:
    ints = np.arange(6, dtype=np.int16).reshape(2, 3)
    assert codecs.decode(_npy(ints), codecs.NPY).dtype == np.int16
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    refused = _status(codecs.decode, buffer.getvalue(), codecs.NPY)
    assert refused.status == 400 and "npy" in refused.message


def test_npz_single_several_and_sparse() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x=ARRAY, mask=np.array([True, False]))
    several = codecs.decode(buffer.getvalue(), codecs.NPZ)
    assert set(several) == {"x", "mask"} and several["mask"].tolist() == [True, False]
    assert codecs.decode(codecs.encode(several, codecs.NPZ), codecs.NPZ)["x"].shape == (2, 3)

    matrix = scipy.sparse.csr_matrix(np.eye(3))
    sparse_buffer = io.BytesIO()
    scipy.sparse.save_npz(sparse_buffer, matrix)
    decoded = codecs.decode(sparse_buffer.getvalue(), codecs.NPZ)
    assert scipy.sparse.issparse(decoded) and decoded.toarray().tolist() == np.eye(3).tolist()
    again = codecs.decode(codecs.encode(decoded, codecs.NPZ), codecs.NPZ)
    assert scipy.sparse.issparse(again)


def test_octet_stream_sniffs_npy_and_npz_else_raw_bytes() -> None:
    assert codecs.decode(_npy(ARRAY), codecs.OCTET_STREAM).shape == (2, 3)
    raw = codecs.decode(b"\x00\x01\xff", codecs.OCTET_STREAM)
    assert raw.dtype == np.uint8 and raw.tolist() == [0, 1, 255]
    assert codecs.encode(b"payload", codecs.OCTET_STREAM) == b"payload"
    assert codecs.encode("text", codecs.OCTET_STREAM) == b"text"


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"[1, 2", codecs.JSON, "not valid JSON"),
        (b'{"a": 1}', codecs.JSON, "JSON object"),
        (b"[[1, 2], [3]]", codecs.JSON, "rectangular"),
        (b'[1, "a", null]', codecs.JSON, "mixes"),
        (b"\xff\xfe", codecs.JSON, "UTF-8"),
        (b"1,2\n3\n", codecs.CSV, "row 2 has 1 fields"),
        (b"\n\n", codecs.CSV, "no rows"),
        (b"not numpy", codecs.NPY, ".npy"),
        (b"PK\x03\x04broken", codecs.NPZ, ".npz"),
        (b"", codecs.JSON, "empty"),
    ],
)
def test_undecodable_bodies_are_400_with_a_reason(
    body: bytes, content_type: str, fragment: str
) -> None:
    error = _status(codecs.decode, body, content_type)
    assert error.status == 400
    assert fragment in error.message


def test_unsupported_content_type_is_415() -> None:
    error = _status(codecs.decode, b"x", "text/plain")
    assert error.status == 415
    assert "Content type text/plain is not supported" in error.message
    assert "input_fn" in error.message


def test_accept_choice_and_406() -> None:
    assert codecs.choose_accept("text/csv") == codecs.CSV
    assert codecs.choose_accept("image/png, application/x-npy;q=0.9") == codecs.NPY
    assert codecs.choose_accept("*/*", default="text/csv") == codecs.CSV
    assert codecs.choose_accept("image/png, */*") == codecs.JSON
    error = _status(codecs.choose_accept, "image/png")
    assert error.status == 406 and "Accept type image/png" in error.message
    assert _status(codecs.encode, [1], "image/png").status == 406


def test_decode_instances_takes_both_envelopes_and_the_bare_array() -> None:
    for key in ("instances", "inputs"):
        request = Context("/model")
        rows = codecs.decode_instances(json.dumps({key: [[1, 2], [3, 4]]}), codecs.JSON, request)
        assert rows.tolist() == [[1, 2], [3, 4]]
        assert json.loads(
            codecs.encode_in_kind(np.array([5, 6]), "*/*", codecs.JSON, request)[0]
        ) == {"predictions": [5, 6]}
    bare = Context("/model")
    assert codecs.decode_instances(b"[[1, 2]]", codecs.JSON, bare).tolist() == [[1, 2]]
    assert codecs.encode_in_kind([7], codecs.JSON, codecs.JSON, bare) == (b"[7]", codecs.JSON)


def test_encode_in_kind_wraps_json_answers_only() -> None:
    request = Context("/model")
    codecs.decode_instances('{"instances": [[1.0]]}', codecs.JSON, request)
    assert codecs.encode_in_kind([1, 2], codecs.CSV, codecs.JSON, request) == (
        b"1\n2\n",
        codecs.CSV,
    )
    assert codecs.encode_in_kind([1], "*/*", codecs.CSV, request) == (b"1\n", codecs.CSV)
    assert codecs.encode_in_kind([1], codecs.JSON, codecs.JSON, None) == (b"[1]", codecs.JSON)
    csv_request = Context("/model")
    assert codecs.decode_instances(b"1,2\n", codecs.CSV, csv_request).shape == (1, 2)
    assert codecs.encode_in_kind([1], codecs.JSON, codecs.JSON, csv_request)[0] == b"[1]"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"x": [1]}, 'without "instances" or "inputs" (it has "x")'),
        ({"instances": [1], "inputs": [1]}, 'both "instances" and "inputs"'),
        ({"inputs": [1], "signature_name": "s"}, 'keys besides "inputs": "signature_name"'),
        ({"instances": True}, '"instances" of the application/json body is a boolean'),
        ({"inputs": []}, '"inputs" list of the application/json body is empty'),
    ],
)
def test_decode_instances_refusals_are_400(body: object, fragment: str) -> None:
    request = Context("/model")
    error = _status(codecs.decode_instances, json.dumps(body), codecs.JSON, request)
    assert error.status == 400 and fragment in error.message
    assert codecs.encode_in_kind([1], codecs.JSON, codecs.JSON, request)[0] == b"[1]"


def test_plain_decode_still_refuses_a_json_object() -> None:
    """The toolkit's own default input_fn (other stacks, user scripts) keeps its contract."""
    error = _status(codecs.decode, b'{"instances": [[1]]}', codecs.JSON)
    assert error.status == 400 and "JSON object" in error.message


def test_numeric_csv_names_the_row_and_column_it_cannot_read() -> None:
    from polyhost.stacks.toolkit.server import InvocationError

    assert codecs.decode_csv_numbers("1,2\n3,\n").tolist()[0] == [1.0, 2.0]
    with pytest.raises(InvocationError) as raised:
        codecs.decode_csv_numbers("1,2\n3,four\n")
    assert raised.value.status == 400
    assert raised.value.message == (
        "The text/csv body cannot be read as numbers: row 2, column 2 is 'four', not a number."
    )
    assert codecs.first_non_number([["1", " "], ["2", "nan"]]) is None
    assert codecs.first_non_number(["1", "x"]) == (1, 2, "x")
