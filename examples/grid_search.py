"""Choose a query strategy by cross-validation with GridSearchCV.

ActiveLearningClassifier.fit runs a simulated active-learning loop on the
training fold (its labels play the annotator) under a fixed label budget, so
the cross-validated score is the accuracy reached with that budget.

Run: python examples/grid_search.py
"""

from sklearn.model_selection import GridSearchCV

import skal
from skal.datasets import load_dataset

X, y, _, _ = load_dataset("digits", n_train=600, random_state=0)
net = skal.nets.cnn_classifier("digits", n_classes=10, random_state=0)
clf = skal.ActiveLearningClassifier(net, skal.RandomSampling(), n_initial=20, batch_size=20,
                                    n_queries=3, random_state=0)
grid = {"query_strategy": [skal.RandomSampling(), skal.UncertaintySampling("margin"),
                           skal.BALD(n_passes=5)]}
search = GridSearchCV(clf, grid, cv=2).fit(X, y)
results = search.cv_results_
for params, score in zip(results["params"], results["mean_test_score"], strict=True):
    print(f"{score:.3f}  {params['query_strategy']}")
print("best:", search.best_params_["query_strategy"])
