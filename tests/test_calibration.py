import numpy as np

from ferlab.models.calibration import expected_calibration_error, fit_temperature, reliability_bins, softmax


def overconfident_logits(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits drawn so that softmax(logits / 3) is calibrated: at T=1 they are overconfident."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 1.5, (n, 5))
    labels = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    return 3.0 * true_logits, labels


def test_temperature_scaling_recovers_the_temperature_and_lowers_ece() -> None:
    logits, labels = overconfident_logits()
    temperature = fit_temperature(logits, labels)
    assert 2.6 < temperature < 3.4
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits, temperature), labels)
    assert before > 0.1 and after < 0.03
    np.testing.assert_array_equal(softmax(logits).argmax(1), softmax(logits, temperature).argmax(1))


def test_ece_is_the_weighted_confidence_accuracy_gap() -> None:
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin 0.9: confidence 0.9, accuracy 0.5; bin 0.6: confidence 0.6, accuracy 1.0
    assert abs(expected_calibration_error(probabilities, labels, n_bins=10) - (0.4 * 2 + 0.4 * 2) / 4) < 1e-9
    _confidence, accuracy, counts = reliability_bins(probabilities, labels, n_bins=10)
    assert counts.sum() == 4 and accuracy[9] == 0.5 and accuracy[6] == 1.0
