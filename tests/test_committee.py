"""DQBC (dropout committees) and QueryByCommittee."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from torch import nn

from skal.strategies.committee import (
    DQBC,
    QueryByCommittee,
    consensus_kl,
    dropout_committee,
    majority_vote,
    soft_vote_disagreement,
    vote_disagreement,
    vote_entropy,
)

# -- scores on hand-made committee outputs -----------------------------------
HAND = np.array([
    # member 1            member 2              member 3
    [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]],
    [[0.1, 0.6, 0.3], [0.4, 0.35, 0.25]],
    [[0.5, 0.4, 0.1], [0.1, 0.8, 0.1]],
])  # (3 members, 2 samples, 3 classes)


def test_scores_on_hand_made_committee():
    # Sample 0: votes 0, 1, 0 -> LABEL 0; only member 2 dissents, by 0.6 - 0.1.
    # Sample 1: votes 2, 0, 1 -> three-way tie -> LABEL 0 (lowest class);
    #   member 1 adds 0.5 - 0.2, member 3 adds 0.8 - 0.1.
    np.testing.assert_array_equal(majority_vote(HAND), [0, 0])
    np.testing.assert_allclose(soft_vote_disagreement(HAND), [0.5, 1.0])
    np.testing.assert_allclose(vote_disagreement(HAND), [1, 2])
    third = 1 / 3
    np.testing.assert_allclose(
        vote_entropy(HAND),
        [-(2 * third * np.log(2 * third) + third * np.log(third)), np.log(3)],
    )


def _reference(proba):
    """Slow per-sample loops of the four measures."""
    K, n, C = proba.shape
    out = {"soft": [], "vote": [], "vote_entropy": [], "consensus_kl": []}
    for s in range(n):
        picks = [int(np.argmax(proba[i, s])) for i in range(K)]
        votes = [picks.count(c) for c in range(C)]
        label = int(np.argmax(votes))
        out["soft"].append(sum(proba[i, s].max() - proba[i, s, label] for i in range(K)))
        out["vote"].append(sum(p != label for p in picks))
        out["vote_entropy"].append(-sum(v / K * np.log(v / K) for v in votes if v))
        mean = proba[:, s].mean(axis=0)
        out["consensus_kl"].append(np.mean([
            sum(proba[i, s, c] * np.log(proba[i, s, c] / mean[c]) for c in range(C))
            for i in range(K)
        ]))
    return {k: np.array(v, dtype=float) for k, v in out.items()}


def test_scores_match_loop_reference():
    rng = np.random.RandomState(0)
    proba = rng.dirichlet(np.full(4, 0.5), size=(5, 60))
    proba[:, :5] = proba[0, :5]  # unanimous rows score 0
    ref = _reference(proba)
    np.testing.assert_allclose(soft_vote_disagreement(proba), ref["soft"], atol=1e-12)
    np.testing.assert_allclose(vote_disagreement(proba), ref["vote"])
    np.testing.assert_allclose(vote_entropy(proba), ref["vote_entropy"], atol=1e-12)
    np.testing.assert_allclose(consensus_kl(proba), ref["consensus_kl"], atol=1e-9)
    assert np.all(soft_vote_disagreement(proba)[:5] == 0)


def test_scores_reject_bad_shapes():
    with pytest.raises(ValueError, match="n_members, n_samples, n_classes"):
        soft_vote_disagreement(np.ones((3, 4)))


# -- the dropout committee on a trained CNN ------------------------------------
def _capture_inputs(module):
    store = []
    handle = module.register_forward_pre_hook(lambda _m, inp: store.append(inp[0].clone()))
    return store, handle


def test_masks_drop_whole_channels_and_units(trained_net, digits_split):
    X = digits_split[0][:40]
    module = trained_net.module_
    feats = module.features  # conv, relu, conv, relu, pool, flatten, linear, relu, dropout
    committee = dropout_committee(trained_net, X, n_members=3, dropout=0.5, random_state=0)
    assert [u.layer for u in committee.units] == ["features.0", "features.2", "features.6"]

    plain, h0 = _capture_inputs(feats[1])  # conv1 output, before ReLU
    with torch.no_grad():
        module.eval()
        module(torch.from_numpy(X))
    h0.remove()
    conv1, h1 = _capture_inputs(feats[1])
    conv2, h2 = _capture_inputs(feats[3])
    dense, h3 = _capture_inputs(feats[7])
    try:
        committee.predict_proba(trained_net, X, batch_size=64)
    finally:
        for h in (h1, h2, h3):
            h.remove()
    assert len(conv1) == len(conv2) == len(dense) == 3  # one pass per member
    for k in range(3):
        m1, m2, m3 = committee.masks[k]
        assert (m1 == 0).sum() == 8 and (m2 == 0).sum() == 16 and (m3 == 0).sum() == 32
        assert set(np.unique(m1)) == {0.0, 2.0}
        # Dropped channels are zero at every sample and position; kept ones rescaled by 2.
        for c in range(16):
            expected = plain[0][:, c] * float(m1[c])
            torch.testing.assert_close(conv1[k][:, c], expected)
        assert torch.all(conv2[k][:, m2 == 0] == 0)
        assert torch.all(conv2[k][:, m2 > 0].abs().sum(dim=(0, 2, 3)) > 0)
        assert torch.all(dense[k][:, m3 == 0] == 0)
    # Every hook the committee installed is gone.
    assert all(not m._forward_hooks for m in module.modules())


def test_members_differ_and_finetuning_lowers_labeled_loss(trained_net, digits_split):
    X, y = digits_split[0], digits_split[1]
    X_lab, y_lab, X_pool = X[:120], y[:120], X[300:500]
    state = {k: v.clone() for k, v in trained_net.module_.state_dict().items()}
    tuned = DQBC(n_members=4, finetune_epochs=5, random_state=0)
    tuned.query(trained_net, X_pool, 5, X_labeled=X_lab, y_labeled=y_lab)
    raw = DQBC(n_members=4, finetune_epochs=0, random_state=0)
    raw.query(trained_net, X_pool, 5, X_labeled=X_lab, y_labeled=y_lab)
    c_tuned, c_raw = tuned.committee_, raw.committee_
    assert c_raw.heads is None and c_tuned.heads is not None
    # Same seed: same masks whatever the fine-tuning settings.
    for a, b in zip(c_tuned.masks, c_raw.masks, strict=True):
        for ma, mb in zip(a, b, strict=True):
            np.testing.assert_array_equal(ma, mb)
    # Members are different partial networks.
    flat = [np.concatenate(m) for m in c_tuned.masks]
    assert all(not np.array_equal(flat[i], flat[j]) for i in range(4) for j in range(i))

    def labeled_loss(committee):
        proba = committee.predict_proba(trained_net, X_lab)
        return -np.log(proba[:, np.arange(len(y_lab)), y_lab]).mean(axis=1)

    before, after = labeled_loss(c_raw), labeled_loss(c_tuned)
    assert np.all(after < before)
    np.testing.assert_allclose(before, c_tuned.loss_before, rtol=1e-4)
    np.testing.assert_allclose(after, c_tuned.loss_after, rtol=1e-4)
    proba = c_tuned.predict_proba(trained_net, X_pool[:50])
    assert all(not np.allclose(proba[i], proba[j]) for i in range(4) for j in range(i))
    # Fine-tuning changed only the members' heads: the full network is untouched.
    for k, v in trained_net.module_.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)


def test_stacked_finetuning_equals_one_member_at_a_time():
    from skal.strategies.committee import _finetune_heads

    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 50, 8, generator=gen)
    y = torch.randint(0, 4, (50,), generator=gen)
    w0, b0 = torch.randn(4, 8, generator=gen), torch.randn(4, generator=gen)
    kw = {"epochs": 3, "lr": 1e-2, "batch_size": 16, "seed": 7}
    w, b = _finetune_heads(feats, y, w0, b0, **kw)
    for k in range(3):
        wk, bk = _finetune_heads(feats[k:k + 1], y, w0, b0, **kw)
        torch.testing.assert_close(w[k], wk[0])
        torch.testing.assert_close(b[k], bk[0])


def test_same_seed_same_committee_and_queries(trained_net, digits_split):
    X, y = digits_split[0], digits_split[1]
    kw = {"X_labeled": X[:60], "y_labeled": y[:60]}
    a, b, c = (DQBC(n_members=3, finetune_epochs=2, random_state=s) for s in (0, 0, 1))
    ia = a.query(trained_net, X[300:450], 8, **kw)
    ib = b.query(trained_net, X[300:450], 8, **kw)
    c.query(trained_net, X[300:450], 8, **kw)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(a.last_utilities_, b.last_utilities_)
    np.testing.assert_array_equal(a.committee_.heads[0][0], b.committee_.heads[0][0])
    assert not np.array_equal(np.concatenate(a.committee_.masks[0]),
                              np.concatenate(c.committee_.masks[0]))


@pytest.mark.parametrize("score", ["soft", "vote"])
def test_distinct_valid_indices(trained_net, digits_split, score):
    X, y = digits_split[0], digits_split[1]
    strategy = DQBC(n_members=3, score=score, finetune_epochs=1, n_candidates=60,
                    random_state=0)
    idx = strategy.query(trained_net, X[300:500], 12, X_labeled=X[:50], y_labeled=y[:50])
    assert idx.dtype == np.int64 and len(set(idx.tolist())) == 12
    assert idx.min() >= 0 and idx.max() < 200
    scored = np.isfinite(strategy.last_utilities_)
    assert scored.sum() == 60 and scored[idx].all()
    # Best first.
    assert np.all(np.diff(strategy.last_utilities_[idx]) <= 0)


def test_without_labeled_set_members_share_the_output_layer(trained_net, digits_split):
    X = digits_split[0][300:400]
    strategy = DQBC(n_members=3, random_state=0)
    u = strategy.utilities(trained_net, X)
    assert u.shape == (100,) and strategy.committee_.heads is None
    assert np.all(u >= 0)


def test_net_without_maskable_layer_is_a_clear_error(digits_split):
    from skal.nets import NeuralNetClassifier

    net = NeuralNetClassifier(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), random_state=0
    ).initialize()
    X = digits_split[0][:20]
    with pytest.raises(ValueError, match="no maskable hidden layer"):
        DQBC().query(net, X, 2)


def test_bad_labels_and_params(trained_net, digits_split):
    X = digits_split[0][:30]
    with pytest.raises(ValueError, match="class indices"):
        DQBC(n_members=2).query(trained_net, X, 2, X_labeled=X[:4],
                                y_labeled=np.array([0, 1, 2, 10]))
    for bad in [{"score": "hard"}, {"dropout": 1.0}, {"n_members": 1},
                {"finetune_lr": 0}, {"finetune_epochs": -1}]:
        with pytest.raises(ValueError):
            DQBC(**bad).query(trained_net, X, 2)
    with pytest.raises(ValueError, match="measure"):
        QueryByCommittee(measure="entropy").query(trained_net, X, 2)
    with pytest.raises(ValueError, match="committee must be"):
        QueryByCommittee(committee="bagging").query(trained_net, X, 2)


def test_clone_and_get_params():
    strategy = DQBC(n_members=7, dropout=0.3, score="vote", n_candidates=100, random_state=3)
    params = clone(strategy).get_params()
    assert params == strategy.get_params()
    assert params["n_members"] == 7 and params["score"] == "vote"
    qbc = QueryByCommittee(DQBC(n_members=3), measure="consensus_kl", random_state=0)
    copy = clone(qbc)
    assert copy.committee is not qbc.committee
    assert copy.get_params()["committee__n_members"] == 3
    copy.set_params(committee__dropout=0.2)
    assert copy.committee.dropout == 0.2


def test_resnet_masks_after_batchnorm(digits_split):
    from skal.nets import cnn_classifier

    X, y = digits_split[0][:24], digits_split[1][:24]
    net = cnn_classifier("resnet18", 10, random_state=0).initialize()
    strategy = DQBC(n_members=2, finetune_epochs=1, random_state=0)
    idx = strategy.query(net, X[8:], 3, X_labeled=X[:8], y_labeled=y[:8])
    assert len(set(idx.tolist())) == 3
    units = strategy.committee_.units
    assert len(units) == 20 and all(u.target.split(".")[-1].startswith("bn") or
                                    u.target.endswith("downsample.1") for u in units)
    assert units[0].layer == "model.conv1" and units[0].target == "model.bn1"
    # After conv1 + bn1 + relu, a dropped channel is exactly zero.
    store, handle = _capture_inputs(net.module_.model.maxpool)
    try:
        strategy.committee_.predict_proba(net, X[:4])
    finally:
        handle.remove()
    dropped = strategy.committee_.masks[0][0] == 0
    assert torch.all(store[0][:, dropped] == 0)


def test_qbc_list_of_estimators_matches_manual(digits_split):
    X, y = digits_split[0].reshape(-1, 64)[:300], digits_split[1][:300]
    members = [
        LogisticRegression(max_iter=200).fit(X[:100], y[:100]),
        DecisionTreeClassifier(max_depth=4, random_state=0).fit(X[:100], y[:100]),
        DecisionTreeClassifier(max_depth=6, random_state=1).fit(X[:100], y[:100]),
    ]
    pool = X[100:]
    proba = np.stack([m.predict_proba(pool) for m in members])
    for measure, fn in [("vote_entropy", vote_entropy), ("consensus_kl", consensus_kl)]:
        strategy = QueryByCommittee(members, measure=measure)
        np.testing.assert_allclose(strategy.utilities(None, pool), fn(proba))
        idx = strategy.query(None, pool, 5)
        assert len(set(idx.tolist())) == 5
    # Frozen members survive clone (GridSearchCV clones strategies).
    frozen = clone(QueryByCommittee([FrozenEstimator(m) for m in members]))
    np.testing.assert_allclose(frozen.utilities(None, pool), vote_entropy(proba))
    # modAL's Committee keeps its members in learner_list.
    modal_committee = SimpleNamespace(learner_list=members, query_strategy=None)
    np.testing.assert_allclose(
        QueryByCommittee().utilities(modal_committee, pool), vote_entropy(proba)
    )
    with pytest.raises(ValueError, match="number of classes"):
        QueryByCommittee([members[0], LogisticRegression().fit(X[:50], y[:50] % 2)]).query(
            None, pool, 2)


def test_qbc_dropout_committee_is_dqbcs(trained_net, digits_split):
    X, y = digits_split[0], digits_split[1]
    kw = {"X_labeled": X[:40], "y_labeled": y[:40]}
    spec = DQBC(n_members=3, finetune_epochs=1)
    qbc = QueryByCommittee(spec, measure="vote_entropy", random_state=0)
    u = qbc.utilities(trained_net, X[300:400], **kw)
    dqbc = DQBC(n_members=3, finetune_epochs=1, random_state=0)
    dqbc.utilities(trained_net, X[300:400], **kw)
    proba = dqbc.committee_.predict_proba(trained_net, X[300:400])
    np.testing.assert_allclose(u, vote_entropy(proba))


def test_modal_protocol_call(trained_net, digits_split):
    X, y = digits_split[0], digits_split[1]
    learner = SimpleNamespace(estimator=trained_net, query_strategy=None,
                              X_training=X[:40], y_training=y[:40])
    strategy = DQBC(n_members=3, finetune_epochs=1, random_state=0)
    idx, utilities = strategy(learner, X[300:400], n_instances=4)
    assert len(set(idx.tolist())) == 4 and utilities.shape == (4,)
    assert strategy.committee_.heads is not None  # fine-tuned on X_training


def test_through_skal_active_learner(digits_split):
    from skal.learner import ActiveLearner
    from skal.nets import cnn_classifier

    X, y = digits_split[0], digits_split[1]
    net = cnn_classifier("digits", 10, max_epochs=1, random_state=0)
    learner = ActiveLearner(net, DQBC(n_members=3, finetune_epochs=1, n_candidates=80),
                            random_state=0).fit(X[:40], y[:40])
    pool = X[40:240]
    idx = learner.query(pool, n_instances=6)
    assert len(set(idx.tolist())) == 6
    learner.teach(pool[idx], y[40:240][idx])
    assert len(learner.y_training) == 46
    assert learner.query_strategy_.committee_.heads is not None


def test_grid_search_over_committee_strategies(digits_split):
    from sklearn.model_selection import GridSearchCV

    from skal.learner import ActiveLearningClassifier
    from skal.nets import cnn_classifier
    from skal.strategies.random import RandomSampling

    X, y = digits_split[0][:300], digits_split[1][:300]
    clf = ActiveLearningClassifier(cnn_classifier("digits", 10, max_epochs=2), RandomSampling(),
                                   n_initial=30, batch_size=10, n_queries=2, random_state=0)
    grid = {"query_strategy": [DQBC(n_members=3), QueryByCommittee(DQBC(n_members=3))]}
    search = GridSearchCV(clf, grid, cv=2).fit(X, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
