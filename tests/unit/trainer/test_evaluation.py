import numpy as np

from mnist_trainer.evaluation import confusion_matrix, per_class_accuracy


def test_confusion_matrix_counts_true_classes_down_and_predictions_across() -> None:
    labels = np.array([0, 0, 1, 2, 2, 2], dtype=np.uint8)
    predicted = np.array([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(labels, predicted, num_classes=4) == (
        (1, 1, 0, 0),
        (0, 1, 0, 0),
        (1, 0, 2, 0),
        (0, 0, 0, 0),  # a class no test image has still gets its row and column
    )


def test_confusion_matrix_diagonal_agrees_with_per_class_accuracy() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 500).astype(np.uint8)
    predicted = np.where(rng.random(500) < 0.8, labels, rng.integers(0, 10, 500))
    matrix = np.array(confusion_matrix(labels, predicted, num_classes=10))
    assert matrix.sum() == 500
    assert matrix.sum(axis=1).tolist() == np.bincount(labels, minlength=10).tolist()
    recall = per_class_accuracy(labels, predicted)
    assert {c: matrix[c, c] / matrix[c].sum() for c in range(10)} == recall
