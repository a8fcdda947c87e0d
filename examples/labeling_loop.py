"""The labeling loop: a small CNN on digits, BALD queries, a simulated annotator.

Run: python examples/labeling_loop.py
"""

import numpy as np

import skal
from skal.datasets import load_dataset

X_pool, y_pool, X_test, y_test = load_dataset("digits", random_state=0)
rng = np.random.RandomState(0)
seed = rng.choice(len(X_pool), 20, replace=False)
labeled = np.zeros(len(X_pool), dtype=bool)
labeled[seed] = True

net = skal.nets.cnn_classifier("digits", n_classes=10, random_state=0)
learner = skal.ActiveLearner(net, skal.BALD(n_passes=10), random_state=0)
learner.fit(X_pool[labeled], y_pool[labeled])
print(f"{labeled.sum():4d} labels: test accuracy {learner.score(X_test, y_test):.3f}")

for _ in range(4):
    unlabeled = np.flatnonzero(~labeled)
    idx = unlabeled[learner.query(X_pool[unlabeled], n_instances=20)]
    learner.teach(X_pool[idx], y_pool[idx])  # y_pool[idx] plays the annotator
    labeled[idx] = True
    print(f"{labeled.sum():4d} labels: test accuracy {learner.score(X_test, y_test):.3f}")
