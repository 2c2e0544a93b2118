from __future__ import annotations

import base64

import numpy as np

from gateway.serving.postprocess import encode_base64, finalize


def test_truncate_then_normalise() -> None:
    v = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    out = finalize(v, 2, True)
    np.testing.assert_allclose(out, [[0.6, 0.8]], rtol=1e-6)  # NOT the first 2 dims of v/13
    np.testing.assert_allclose(finalize(v, None, True), v / 13, rtol=1e-6)
    np.testing.assert_array_equal(finalize(v, 2, False), [[3.0, 4.0]])


def test_zero_vector_does_not_divide_by_zero() -> None:
    assert np.all(finalize(np.zeros((1, 4), np.float32), None, True) == 0)


def test_base64_is_little_endian_float32() -> None:
    v = np.array([1.5, -2.0, 0.1], dtype=np.float32)
    raw = base64.b64decode(encode_base64(v))
    np.testing.assert_array_equal(np.frombuffer(raw, dtype="<f4"), v)


def test_normalising_is_bit_identical_to_dividing_by_numpys_norm() -> None:
    rng = np.random.default_rng(7)
    for shape, dims in [((1, 1024), None), ((9, 64), 32), ((33, 1024), 256)]:
        for scale in (1e-3, 1.0, 1e3):
            x = (rng.standard_normal(shape) * scale).astype(np.float32)
            cut = x[:, :dims] if dims else x
            want = np.ascontiguousarray(cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12))
            got = finalize(x, dims, True)
            assert got.dtype == np.float32 and got.flags.c_contiguous and np.array_equal(got, want)
