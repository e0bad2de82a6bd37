"""The photo -> CCTV adapter: fitting, applying, saving, and its use on photo queries."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.search.photo_adapter import DEFAULT_PHOTO_ADAPTER, PhotoAdapter, fit_photo_adapter
from sightline.search.photos import embed_photos


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_fit_recovers_a_domain_shift():
    rng = np.random.default_rng(0)
    cctv = _unit(rng.normal(size=(400, 16)))
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    photos = _unit(cctv @ rotation.T)  # the photo domain: the same people, rotated
    w = fit_photo_adapter(photos, cctv, ridge=0.01)
    mapped = PhotoAdapter(w, "x").apply(photos)
    assert np.mean(np.sum(mapped * cctv, axis=1)) > 0.99
    assert np.mean(np.sum(photos * cctv, axis=1)) < 0.5  # far apart before


def test_a_strong_ridge_keeps_the_identity_map():
    rng = np.random.default_rng(1)
    photos, targets = _unit(rng.normal(size=(5, 8))), _unit(rng.normal(size=(5, 8)))
    w = fit_photo_adapter(photos, targets, ridge=1e6)
    np.testing.assert_allclose(w, np.eye(8), atol=1e-4)


@pytest.mark.parametrize(
    ("photos", "targets", "ridge", "match"),
    [((3, 4), (3, 5), 1.0, "must both be"), ((3, 4), (3, 4), 0.0, "ridge")],
)
def test_bad_fit_arguments(photos, targets, ridge, match):
    with pytest.raises(ValueError, match=match):
        fit_photo_adapter(np.ones(photos), np.ones(targets), ridge)


def test_save_load_and_embedder_binding(tmp_path):
    adapter = PhotoAdapter(np.eye(4) * 2, "abc", {"ridge": 3.0})
    path = tmp_path / "a.npz"
    adapter.save(path)
    loaded = PhotoAdapter.load(path)
    np.testing.assert_allclose(loaded.matrix, adapter.matrix)
    assert loaded.report == {"ridge": 3.0}
    assert PhotoAdapter.for_embedder("abc", path) is not None
    assert PhotoAdapter.for_embedder("other weights", path) is None
    assert PhotoAdapter.for_embedder("abc", tmp_path / "missing.npz") is None
    with pytest.raises(ValueError, match="do not fit"):
        loaded.apply(np.ones((1, 3)))


def test_the_committed_adapter_fits_the_built_in_embedder():
    import hashlib

    from sightline.models.builtin_embedder import DEFAULT_REID_WEIGHTS

    sha = hashlib.sha256(DEFAULT_REID_WEIGHTS.read_bytes()).hexdigest()
    adapter = PhotoAdapter.for_embedder(sha, DEFAULT_PHOTO_ADAPTER)
    assert adapter is not None and adapter.matrix.shape == (128, 128)


def test_embed_photos_maps_the_vectors():
    def embed(crops):
        return np.tile(np.array([[1.0, 0.0]], np.float32), (len(crops), 1))

    swap = PhotoAdapter(np.array([[0.0, 1.0], [1.0, 0.0]]), "x")
    photo = np.zeros((40, 20, 3), np.uint8)
    plain = embed_photos([photo], embed)
    mapped = embed_photos([photo], embed, adapter=swap)
    np.testing.assert_allclose(plain.vectors, [[1.0, 0.0]])
    np.testing.assert_allclose(mapped.vectors, [[0.0, 1.0]])
