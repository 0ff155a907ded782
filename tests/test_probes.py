"""Probes against scikit-learn on the same features and folds."""

import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from layerprobe.probes import ProbeConvergenceWarning, cross_validate, fit_probes, fold_ids


def layered_data(n=300, dim=12, layers=4, classes=3, seed=0):
    """Layer l carries the label with signal strength l: accuracy must rise with depth."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim))
    features = np.stack([rng.normal(size=(n, dim)) + 0.6 * layer * centres[labels] for layer in range(layers)])
    return features.astype(np.float32), labels


def test_fit_matches_sklearn_coefficients_and_predictions():
    features, labels = layered_data()
    probes = fit_probes(features, labels, C=1.0)
    probabilities = probes.predict_proba(features)
    for layer in range(features.shape[0]):
        x = StandardScaler().fit_transform(features[layer])
        reference = LogisticRegression(C=1.0, max_iter=5000, tol=1e-8).fit(x, labels)
        np.testing.assert_allclose(probabilities[layer], reference.predict_proba(x), atol=2e-3)


@pytest.mark.parametrize("classes", [2, 4])
def test_all_31_layers_in_one_solve_match_sklearn_at_realistic_size(classes):
    """d = 576 (SmolLM2), n = 2,000 training + 500 held-out samples, 31 layers in one solve:
    held-out accuracy within 1 point and probabilities within 1e-3 of scikit-learn at C=1 (a
    softmax over two classes, i.e. C=2, or ddof=1 scaling is off by more than that)."""
    rng = np.random.default_rng(classes)
    n, held_out, dim, layers = 2000, 500, 576, 31
    labels = rng.integers(0, classes, n + held_out)
    centres = rng.normal(size=(classes, dim)) * rng.uniform(0.5, 2.0, dim)  # unequal feature scales
    features = np.stack([rng.normal(size=(n + held_out, dim)) * np.linspace(0.5, 3.0, dim)
                         + 0.1 * layer / (layers - 1) * centres[labels] for layer in range(layers)]).astype(np.float32)
    train, test = slice(0, n), slice(n, None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ProbeConvergenceWarning)
            probes = fit_probes(features[:, train], labels[train], C=1.0)
    finally:
        torch.set_num_threads(threads)
    probabilities = probes.predict_proba(features[:, test])
    accuracy = (probes.predict(features[:, test]) == labels[test]).mean(axis=1)
    assert accuracy[-1] > accuracy[0] + 0.2  # the signal grows with depth
    for layer in (0, 15, 30):  # scikit-learn on three layers keeps the test near 20 s CPU; ours solves all 31
        scaler = StandardScaler().fit(features[layer, train])
        # newton-cg reaches the optimum; lbfgs at tol=1e-8 stops on its loss-change test up to 2.5e-3 away
        reference = LogisticRegression(C=1.0, solver="newton-cg", tol=1e-10, max_iter=500).fit(scaler.transform(features[layer, train]),
                                                                            labels[train])
        held = scaler.transform(features[layer, test])
        assert abs(accuracy[layer] - reference.score(held, labels[test])) <= 0.01
        np.testing.assert_allclose(probabilities[layer], reference.predict_proba(held), atol=1e-3)


def test_layers_stopped_at_max_iter_are_named():
    features, labels = layered_data(n=200, dim=20, layers=3, classes=2)
    with pytest.warns(ProbeConvergenceWarning, match=r"max_iter=2 .*layers \[0, 1, 2\]"):
        probes = fit_probes(features, labels, max_iter=2)
    assert not probes.converged.any() and (probes.n_iter == 2).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeConvergenceWarning)
        assert fit_probes(features, labels).converged.all()


def test_cross_validation_within_one_point_of_sklearn():
    features, labels = layered_data(seed=1)
    result = cross_validate(features, labels, folds=5, seed=0)
    fold = fold_ids(len(labels), 5, 0)
    for layer in range(features.shape[0]):
        hits = []
        for k in range(5):
            train, test = fold != k, fold == k
            scaler = StandardScaler().fit(features[layer][train])
            clf = LogisticRegression(C=1.0, max_iter=5000).fit(scaler.transform(features[layer][train]), labels[train])
            hits.append(clf.predict(scaler.transform(features[layer][test])) == labels[test])
        sklearn_accuracy = np.concatenate(hits).mean()
        assert abs(result.mean()[layer] - sklearn_accuracy) <= 0.01
    assert result.mean()[-1] > result.mean()[0] + 0.3  # the signal grows with depth
    assert np.all(np.abs(result.control_correct.mean(axis=1) - 1 / 3) < 0.12)  # shuffled labels: chance


def test_groups_stay_in_one_fold_and_rows_follow_the_schema():
    features, labels = layered_data(n=120)
    groups = np.repeat(np.arange(30), 4)
    fold = fold_ids(120, 5, 0, groups)
    assert all(len(set(fold[groups == g])) == 1 for g in range(30))
    rows = cross_validate(features, labels, folds=5, groups=groups).rows(model="m", task="t")
    assert {r["metric"] for r in rows} == {"accuracy", "control"}
    assert all(r["probe_unconverged"] == 0 for r in rows)
    assert sorted({r["layer"] for r in rows}) == [0, 1, 2, 3]
    assert all(r["ci_low"] - 1e-9 <= r["value"] <= r["ci_high"] + 1e-9 for r in rows)


def test_one_class_is_rejected():
    with pytest.raises(ValueError, match="two classes"):
        fit_probes(np.zeros((2, 10, 3)), np.zeros(10))
