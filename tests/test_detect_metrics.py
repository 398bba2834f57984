"""Detection metrics (ACC, AUC, EER, AP) on cases small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fakelab.detection.metrics import (
    accuracy,
    average_precision,
    detection_metrics,
    equal_error_rate,
    roc_auc,
    roc_curve,
)
from fakelab.errors import InputError


def test_perfect_separation():
    labels, scores = [0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]
    assert roc_auc(labels, scores) == 1.0
    assert equal_error_rate(labels, scores) == 0.0
    assert average_precision(labels, scores) == 1.0
    assert accuracy(labels, scores) == 1.0


def test_inverted_scores():
    labels, scores = [0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]
    assert roc_auc(labels, scores) == 0.0
    assert equal_error_rate(labels, scores) == 1.0
    assert accuracy(labels, scores) == 0.0
    # Precision 0 until the last two, which are the fakes: (1/3 + 2/4) / 2.
    assert average_precision(labels, scores) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_one_pair_out_of_order():
    # Fakes 0.35 and 0.8, reals 0.1 and 0.4: 3 of the 4 (fake, real) pairs are ordered right.
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    fpr, tpr, thresholds = roc_curve(labels, scores)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])
    assert roc_auc(labels, scores) == pytest.approx(0.75)
    # Ranked: fake (P=1), real, fake (P=2/3): AP = 0.5 * 1 + 0.5 * 2/3.
    assert average_precision(labels, scores) == pytest.approx(5 / 6)
    # FPR and FNR are both 0.5 between the thresholds 0.8 and 0.4.
    assert equal_error_rate(labels, scores) == pytest.approx(0.5)


def test_ties_count_half_and_form_one_threshold():
    labels, scores = [0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]
    fpr, tpr, _ = roc_curve(labels, scores)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    # Pairs: (0.9 vs 0.5) 1, (0.9 vs 0.2) 1, (0.5 vs 0.2) 1, (0.5 vs 0.5) 1/2.
    assert roc_auc(labels, scores) == pytest.approx(3.5 / 4)
    # The ROC crosses FPR = FNR half-way from (0, 0.5) to (0.5, 1).
    assert equal_error_rate(labels, scores) == pytest.approx(0.25)
    # The threshold is inclusive: 0.5 counts as fake.
    assert accuracy(labels, scores, threshold=0.5) == 0.75


def test_all_scores_equal_give_chance_auc_and_the_base_rate_as_ap():
    labels = [0, 0, 0, 1]
    scores = [0.3] * 4
    assert roc_auc(labels, scores) == 0.5
    assert average_precision(labels, scores) == pytest.approx(0.25)
    assert equal_error_rate(labels, scores) == pytest.approx(0.5)


def test_detection_metrics_bundle_counts_and_threshold():
    metrics = detection_metrics([0, 0, 1, 1, 1], [0.1, 0.6, 0.7, 0.65, 0.2], threshold=0.62)
    assert (metrics.reals, metrics.fakes) == (2, 3)
    # At 0.62: reals 0.1 and 0.6 right, fakes 0.7 and 0.65 right, 0.2 wrong.
    assert metrics.accuracy == pytest.approx(4 / 5)
    # Fake-real pairs ordered right: 0.7 and 0.65 beat both reals, 0.2 beats 0.1 only.
    assert metrics.auc == pytest.approx(5 / 6)
    assert set(metrics.to_json()) == {"accuracy", "auc", "eer", "ap", "reals", "fakes"}


def test_metrics_need_both_classes_and_matching_lengths():
    with pytest.raises(InputError, match="both real"):
        roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(InputError, match="3 labels but 2 scores"):
        roc_auc([0, 1, 1], [0.2, 0.3])
    with pytest.raises(InputError, match="0 \\(real\\) or 1"):
        roc_auc([0, 2], [0.2, 0.3])
