"""Model-agnostic strategies work with any scikit-learn classifier in a Pipeline.

Run: python examples/pipeline_sklearn.py
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skal
from skal.datasets import load_dataset

X_pool, y_pool, X_test, y_test = load_dataset("digits", random_state=0)
X_pool, X_test = X_pool.reshape(len(X_pool), -1), X_test.reshape(len(X_test), -1)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))

for strategy in [skal.RandomSampling(), skal.UncertaintySampling("margin")]:
    learner = skal.ActiveLearner(model, strategy, random_state=0)
    labeled = np.zeros(len(X_pool), dtype=bool)
    labeled[np.random.RandomState(0).choice(len(X_pool), 20, replace=False)] = True
    learner.fit(X_pool[labeled], y_pool[labeled])
    for _ in range(8):
        unlabeled = np.flatnonzero(~labeled)
        idx = unlabeled[learner.query(X_pool[unlabeled], n_instances=10)]
        learner.teach(X_pool[idx], y_pool[idx])
        labeled[idx] = True
    print(f"{type(strategy).__name__:22s} {labeled.sum()} labels: "
          f"accuracy {learner.score(X_test, y_test):.3f}")
