"""fashion.metrics: hand-made arrays with known answers, edge cases, and a cross-check with sklearn."""

import numpy as np
import pytest

from fashion import metrics as M


def test_precision_and_per_label():
    q = np.array(["a", "b", "a"])
    nb = np.array([["a", "a", "b"], ["a", "b", "b"], ["b", "b", "b"]])
    assert M.precision_at_k(q, nb) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert M.precision_at_k(q, nb, k=1) == pytest.approx(1 / 3)
    assert M.per_label_precision(q, nb, k=2) == {"a": pytest.approx(0.5), "b": pytest.approx(0.5)}
    assert M.per_label_precision([1, 2], [[1, 1], [1, 2]]) == {"1": 1.0, "2": 0.5}


def test_average_precision_definitions():
    q = ["a"]
    nb = [["x", "a", "x", "a"]]
    # hits at ranks 2 and 4: P@2 = 1/2, P@4 = 2/4
    assert M.average_precision_at_k(q, nb).tolist() == [pytest.approx(0.5)]  # normalised by 2 hits
    assert M.average_precision_at_k(q, nb, relevant_counts={"a": 10}).tolist() == [pytest.approx(1 / 4)]  # min(k=4, 10)
    assert M.average_precision_at_k(q, nb, relevant_counts=[3]).tolist() == [pytest.approx(1 / 3)]
    assert M.average_precision_at_k(q, nb, k=1).tolist() == [0.0]  # no hit in the first 1
    assert M.map_at_k(["a", "b"], [["a", "a"], ["x", "x"]]) == pytest.approx(0.5)
    assert M.average_precision_at_k(q, nb, relevant_counts={"a": 0}).tolist() == [0.0]


def test_recall_at_k_inshop():
    q = ["i1", "i2", "i3"]
    nb = [["i9", "i1", "i8"], ["i2", "i2", "i1"], ["i7", "i8", "i9"]]
    assert M.recall_at_k(q, nb, ks=(1, 2, 3)) == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(2 / 3)}
    assert M.recall_at_k(q, nb, ks=2) == {2: pytest.approx(2 / 3)}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: M.precision_at_k([], np.empty((0, 3))), "empty"),
        (lambda: M.precision_at_k(["a"], [[]]), "empty"),
        (lambda: M.precision_at_k(["a"], [["a", "b"]], k=3), r"k must be <= 2 \(neighbour columns given\), got 3"),
        (lambda: M.precision_at_k(["a"], [["a"]], k=0), "k must be >= 1"),
        (lambda: M.precision_at_k(["a", "b"], [["a"]]), "2 query labels but 1"),
        (lambda: M.precision_at_k([["a"]], [["a"]]), "1-D"),
        (lambda: M.map_at_k(["a"], [["a"]], relevant_counts={"b": 1}), "no count"),
        (lambda: M.recall_at_k(["a"], [["a"]], ks=(1, 2)), r"k must be <= 1 \(neighbour columns given\), got 2"),
        (lambda: M.recall_at_k(["a"], [["a"]], ks=()), "ks is empty"),
        (lambda: M.topk_accuracy([0], [[0.1, 0.9]], ks=(3,)), r"k must be <= 2 \(neighbour columns given\), got 3"),
        (lambda: M.topk_accuracy([], np.empty((0, 2))), "empty"),
        (lambda: M.topk_accuracy([2], [[0.1, 0.9]]), "out of range"),
        (lambda: M.confusion_matrix([0, 3], [0, 1], 3), "class index 3"),
        (lambda: M.confusion_matrix([0, 1], [0], 3), "2 targets but 1"),
        (lambda: M.confusion_matrix([0.5], [0], 3), "integer"),
        (lambda: M.confusion_matrix([-1], [0], 3), "negative"),
        (lambda: M.per_class_accuracy(np.ones((2, 3))), "square"),
        (lambda: M.most_confused(np.ones((2, 2)), ["a"]), "1 class names"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_topk_accuracy_and_confusion_known():
    scores = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    targets = np.array([1, 1, 0, 2])
    assert M.topk_accuracy(targets, scores, ks=(1, 2, 3)) == {1: 0.25, 2: 0.5, 3: 1.0}
    cm = M.confusion_matrix(targets, scores.argmax(1), 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[0, 0, 1], [1, 1, 0], [1, 0, 0]]
    np.testing.assert_allclose(M.per_class_accuracy(cm), [0.0, 0.5, 0.0])
    assert M.most_confused(cm, ["x", "y", "z"]) == [("x", "z", 1), ("y", "x", 1), ("z", "x", 1)]
    assert M.most_confused(cm, ["x", "y", "z"], min_count=2) == []


def test_cross_check_with_sklearn():
    from sklearn.metrics import confusion_matrix, top_k_accuracy_score

    rng = np.random.default_rng(0)
    n, c = 500, 7
    targets = rng.integers(0, c, n)
    scores = rng.random((n, c))
    ours = M.topk_accuracy(targets, scores, ks=(1, 3, 5))
    for k, value in ours.items():
        assert value == pytest.approx(top_k_accuracy_score(targets, scores, k=k, labels=np.arange(c)))
    preds = rng.integers(0, c, n)
    np.testing.assert_array_equal(M.confusion_matrix(targets, preds, c), confusion_matrix(targets, preds, labels=np.arange(c)))
