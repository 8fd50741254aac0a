"""The README's dropout figures: a network that overfits a small digits training set, with and without dropout.

150 training images, the rest of the digits set for testing; 64-256-256-10 ReLU, Adam 0.001, batch 32,
400 epochs, the same seed for every run.
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from backprop_numba import MLP

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X / 16, y, train_size=150, stratify=y, random_state=0)
for rate in (0.0, 0.2, 0.5):
    net = MLP([64, 256, 256, 10], activation="relu", loss="cross_entropy", seed=0, dropout=rate)
    h = net.fit(X_train, y_train, epochs=400, batch_size=32, learning_rate=0.001, optimizer="adam", seed=0,
                progress=False)
    train = net.evaluate(X_train, y_train)
    test = net.evaluate(X_test, y_test)
    print(f"dropout {rate}: train loss {train['loss']:.4f}, accuracy {train['accuracy']:.3f} | "
          f"test loss {test['loss']:.4f}, accuracy {test['accuracy']:.4f}")
