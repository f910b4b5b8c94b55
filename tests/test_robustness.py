"""Corruptions for the robustness benchmark, and rebalancing by the training class prior."""

from __future__ import annotations

import numpy as np
import pytest

from ferlab.errors import FerlabError
from ferlab.evaluation.robustness import (
    CORRUPTIONS,
    SEVERITIES,
    balanced_subsample,
    corrupt,
    model_input,
)
from ferlab.models.prior import class_prior, prior_of_targets, prior_strength, rebalance


def _faces(n: int = 6, size: int = 48) -> np.ndarray:
    """Smooth synthetic RGB 'faces': a bright disc with dark eyes and mouth on a gradient."""
    yy, xx = np.mgrid[:size, :size] / size
    face = 60 + 120 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.16) + 40 * xx
    face[int(0.33 * size) : int(0.4 * size), int(0.25 * size) : int(0.75 * size)] = 30
    face[int(0.7 * size) : int(0.78 * size), int(0.35 * size) : int(0.65 * size)] = 40
    grey = np.stack([np.roll(face, k, axis=1) for k in range(n)]).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=3)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_changes_pixels_keeps_shape_and_repeats_with_the_seed(name: str) -> None:
    faces = _faces()
    for severity in SEVERITIES:
        out = corrupt(faces, name, severity, seed=3)
        assert out.shape == faces.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - faces).mean() > 0.5, (name, severity)
        np.testing.assert_array_equal(out, corrupt(faces, name, severity, seed=3))


@pytest.mark.parametrize("name", ["gaussian_blur", "gaussian_noise", "jpeg", "low_resolution", "occlusion"])
def test_higher_severity_moves_further_from_the_original(name: str) -> None:
    faces = _faces()
    distance = [np.abs(corrupt(faces, name, s).astype(int) - faces).mean() for s in SEVERITIES]
    assert distance[0] < distance[2], distance


def test_colour_cast_is_coloured_and_model_input_makes_it_grey_at_the_model_size() -> None:
    tinted = corrupt(_faces(), "colour", 3)
    assert np.abs(tinted[..., 0].astype(int) - tinted[..., 2]).mean() > 5
    grey = model_input(tinted, 96, 1)
    assert grey.shape == (len(tinted), 96, 96, 1)
    assert model_input(tinted, 64, 3).shape == (len(tinted), 64, 64, 3)


def test_balanced_subsample_takes_the_rarest_class_count_from_each_class() -> None:
    labels = np.array([0] * 50 + [1] * 7 + [2] * 20)
    chosen = balanced_subsample(labels, seed=1)
    assert np.bincount(labels[chosen]).tolist() == [7, 7, 7]
    np.testing.assert_array_equal(chosen, balanced_subsample(labels, seed=1))


def test_rebalancing_by_the_prior_undoes_it() -> None:
    prior = np.array([0.7, 0.2, 0.1])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]])
    balanced = rebalance(probabilities, prior)
    np.testing.assert_allclose(balanced[0], [1 / 3] * 3)  # the prior itself carries no evidence
    assert balanced[1].argmax() == 2 and np.allclose(balanced.sum(axis=1), 1)
    np.testing.assert_allclose(rebalance(probabilities, np.full(3, 1 / 3)), probabilities)


def test_a_partial_rebalancing_lies_between_the_training_prior_and_uniform() -> None:
    prior = np.array([0.7, 0.2, 0.1])
    probabilities = np.array([[0.5, 0.3, 0.2]])
    np.testing.assert_allclose(rebalance(probabilities, prior, 0.0), probabilities)
    half = rebalance(probabilities, prior, 0.5)[0]
    full = rebalance(probabilities, prior)[0]
    assert probabilities[0, 0] > half[0] > full[0] and probabilities[0, 2] < half[2] < full[2]
    assert prior_strength("train") == 0 and prior_strength("uniform") == 1 and prior_strength("0.25") == 0.25


def test_prior_of_vote_targets_is_their_mean_and_never_zero() -> None:
    targets = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [1.0, 0, 0], [0.5, 0.5, 0]])
    prior = prior_of_targets(targets)
    assert prior[0] == pytest.approx(0.75, abs=1e-3) and prior[2] > 0 and sum(prior) == pytest.approx(1)


def test_a_model_without_a_recorded_prior_is_a_clear_error() -> None:
    with pytest.raises(FerlabError, match="class prior"):
        class_prior(None, 3)
    with pytest.raises(FerlabError, match="does not fit"):
        class_prior([0.5, 0.5], 3)
    np.testing.assert_allclose(class_prior([2, 1, 1], 3), [0.5, 0.25, 0.25])


def test_training_corruptions_apply_with_their_probability_and_repeat_with_the_seed() -> None:
    import torch

    from ferlab.training.augment import augment
    from ferlab.training.config import AugmentConfig

    faces = torch.from_numpy(_faces(8, 96)[..., :1].transpose(0, 3, 1, 2).copy())
    plain = augment(faces, AugmentConfig(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain, faces.float())  # every corruption is off by default
    for key in ("blur", "low_res", "erase"):
        config = AugmentConfig(**{key: 1.0})
        out = augment(faces, config, torch.Generator().manual_seed(1))
        assert out.shape == faces.shape and out.min() >= 0 and out.max() <= 255
        changed = (out - faces.float()).abs().flatten(1).mean(1)
        assert (changed > 0.1).all(), key  # probability 1: every face
        torch.testing.assert_close(out, augment(faces, config, torch.Generator().manual_seed(1)))
    erased = augment(faces, AugmentConfig(erase=1.0), torch.Generator().manual_seed(2)) != faces.float()
    area = erased.flatten(1).float().mean(1)
    assert ((area > 0.005) & (area < 0.25)).all()  # 2-20 % of the face


def test_clean_share_keeps_a_share_of_faces_free_of_corruptions() -> None:
    import torch

    from ferlab.training.augment import augment
    from ferlab.training.config import AugmentConfig

    faces = torch.from_numpy(_faces(64, 48)[..., :1].transpose(0, 3, 1, 2).copy())
    corrupt = {"policy": "photometric", "noise": 0.1, "blur": 1.0, "low_res": 1.0, "erase": 1.0}
    every = augment(faces, AugmentConfig(**corrupt, clean_share=1.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(every, faces.float())
    half = augment(faces, AugmentConfig(**corrupt, clean_share=0.5), torch.Generator().manual_seed(0))
    untouched = (half == faces.float()).flatten(1).all(1)
    assert 16 <= int(untouched.sum()) <= 48  # about half of 64 faces, the rest corrupted
    assert ((half - faces.float()).abs().flatten(1).mean(1)[~untouched] > 0.1).all()


def test_noise_max_draws_one_noise_level_per_face_and_off_keeps_one_level() -> None:
    import torch

    from ferlab.training.augment import photometric
    from ferlab.training.config import AugmentConfig, build_config

    faces = torch.full((64, 1, 48, 48), 128.0)
    level = {"brightness": 0.0, "contrast": 0.0}
    spread = photometric(faces, AugmentConfig(noise=0.0, noise_max=0.2, **level), torch.Generator().manual_seed(0))
    stds = (spread - 128).flatten(1).std(1) / 255
    assert stds.min() < 0.04 and stds.max() > 0.16 and (stds < 0.21).all()  # clean to very noisy faces
    fixed = photometric(faces, AugmentConfig(noise=0.1, **level), torch.Generator().manual_seed(0))
    stds = (fixed - 128).flatten(1).std(1) / 255
    assert ((stds > 0.09) & (stds < 0.11)).all()
    # noise_max at or below noise draws nothing more: older configs keep their random stream
    same = photometric(faces, AugmentConfig(noise=0.1, noise_max=0.1, **level), torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, fixed)
    with pytest.raises(FerlabError, match="noise_max"):
        build_config({"data": {"path": "x"}, "augment": {"noise": 0.05, "noise_max": 0.02}})
