"""Binary packing (ubinary / binary) against numpy's packbits and hand-worked bytes, and the wire
encodings built on it."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gateway.serving.postprocess import encode_vectors, finalize, pack_binary, pack_ubinary
from gateway.serving.spec import OutputFormat


def test_known_vector_msb_first() -> None:
    # dims 0..7 -> byte 0, dim 0 in the most significant bit; > 0 sets the bit (0.0 does not)
    v = np.array([[0.5, -1.0, 0.0, 2.0, -0.1, 3.0, 1e-9, -0.0, 7.0, -7.0, 0.1, 0.1, -1, -1, -1, 1]], dtype=np.float32)
    assert pack_ubinary(v).tolist() == [[0b10010110, 0b10110001]]
    assert pack_binary(v).tolist() == [[0b10010110 - 128, 0b10110001 - 128]]
    assert pack_ubinary(v).dtype == np.uint8 and pack_binary(v).dtype == np.int8


def test_dimensions_not_a_multiple_of_8_pad_with_zero_bits() -> None:
    v = np.ones((1, 10), dtype=np.float32)  # 10 dims -> 2 bytes: 8 ones, then 11000000
    assert pack_ubinary(v).tolist() == [[255, 0b11000000]]
    assert pack_ubinary(-v).tolist() == [[0, 0]]
    assert pack_ubinary(np.ones((3, 1), dtype=np.float32)).tolist() == [[128]] * 3


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 70)), elements=st.floats(-4, 4, width=32)))
def test_matches_numpy_packbits(vectors: np.ndarray) -> None:
    expected = np.packbits((vectors > 0).astype(np.uint8), axis=1)  # numpy's default: big bit order
    assert np.array_equal(pack_ubinary(vectors), expected)
    assert np.array_equal(pack_binary(vectors), (expected.astype(np.int16) - 128).astype(np.int8))
    assert pack_ubinary(vectors).shape[1] == -(-vectors.shape[1] // 8)
    # and it unpacks back to the signs, padding bits zero
    bits = np.unpackbits(pack_ubinary(vectors), axis=1)
    assert np.array_equal(bits[:, : vectors.shape[1]], (vectors > 0).astype(np.uint8))
    assert not bits[:, vectors.shape[1] :].any()


def test_truncate_first_then_pack() -> None:
    rng = np.random.default_rng(3)
    raw = rng.standard_normal((4, 64)).astype(np.float32)
    out = encode_vectors(finalize(raw, 12, True), OutputFormat(("ubinary",)))
    for row, s in zip(raw, out, strict=True):
        got = np.frombuffer(base64.b64decode(s), dtype=np.uint8)
        assert got.tolist() == np.packbits(row[:12] > 0).tolist()  # 12 dims -> 2 bytes
        assert len(got) == 2


def test_wire_encodings_single_and_keyed() -> None:
    rng = np.random.default_rng(5)
    vecs = finalize(rng.standard_normal((2, 16)).astype(np.float32), None, True)
    floats = encode_vectors(vecs, OutputFormat(("float",)))
    assert np.array_equal(np.array(floats), vecs)
    b64 = encode_vectors(vecs, OutputFormat(("base64",)))
    assert np.array_equal(np.frombuffer(base64.b64decode(b64[1]), dtype="<f4"), vecs[1])
    binary = encode_vectors(vecs, OutputFormat(("binary",)))
    assert np.frombuffer(base64.b64decode(binary[0]), dtype=np.int8).tolist() == pack_binary(vecs)[0].tolist()
    listed = encode_vectors(vecs, OutputFormat(("ubinary", "binary"), packed="list"))
    assert listed == pack_ubinary(vecs).tolist()  # not keyed: the first type only
    keyed = encode_vectors(vecs, OutputFormat(("float", "ubinary", "binary", "base64"), keyed=True))
    assert [sorted(k) for k in keyed] == [["base64", "binary", "float", "ubinary"]] * 2
    assert keyed[0]["ubinary"] == base64.b64encode(pack_ubinary(vecs)[0].tobytes()).decode()
    assert np.array_equal(keyed[1]["float"], vecs[1])


@pytest.mark.parametrize("dims", [8, 64, 1024])
def test_hamming_distance_equals_sign_disagreements(dims: int) -> None:
    """What a vector database computes on the packed bytes is what the floats say."""
    rng = np.random.default_rng(dims)
    a, b = rng.standard_normal((2, dims)).astype(np.float32)
    pa, pb = pack_ubinary(np.stack([a, b]))
    hamming = int(np.unpackbits(np.bitwise_xor(pa, pb)).sum())
    assert hamming == int(((a > 0) != (b > 0)).sum())
