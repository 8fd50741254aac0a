"""The README's class-weight figures: digits with the 3s cut to a tenth, with and without class_weight."""
import warnings
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import balanced_accuracy_score, recall_score
from sklearn.model_selection import train_test_split
from backprop_numba.estimators import MLPClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X / 16, y, test_size=0.3, stratify=y, random_state=0)
rng = np.random.default_rng(0)
threes = np.flatnonzero(y_train == 3)
drop = rng.choice(threes, size=len(threes) - len(threes) // 10, replace=False)   # keep a tenth of the 3s
keep = np.setdiff1d(np.arange(len(y_train)), drop)
X_train, y_train = X_train[keep], y_train[keep]
for cw in (None, "balanced"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=60, random_state=0,
                            class_weight=cw).fit(X_train, y_train)
    pred = clf.predict(X_test)
    print(f"class_weight={cw!r}: balanced accuracy {balanced_accuracy_score(y_test, pred):.3f}, "
          f"recall of the 3s {recall_score(y_test, pred, labels=[3], average=None)[0]:.3f}, "
          f"accuracy {np.mean(pred == y_test):.3f}")
