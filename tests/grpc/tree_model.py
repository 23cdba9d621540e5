"""The demo's iris models as server.py serves them with --model: a decision
tree exported by the demo (`tests::demo::model::Model::to_json`), walked as
linfa-trees walks it, and the canary's input-validation fault.

The tree file:
    {"classes": ["setosa", ...], "features": 4,
     "root": {"feature": 2, "below": 2.45, "left": NODE, "right": NODE}}
with leaves {"class": 0}. A sample goes left when its feature is below
the split value (strictly, as linfa-trees' prediction does).

A request is JSON bytes, {"x": [sepal length, sepal width, petal length,
petal width]} in cm; the answer names the class, {"class": "setosa"}.
"""

import json
import math


class BadRequest(ValueError):
    """The request is not four finite numbers: INVALID_ARGUMENT."""


class Rejected(ValueError):
    """The faulty validation turned a real input away: UNAVAILABLE, as a
    model server answers when its pre-processing step fails."""


class TreeModel:
    def __init__(self, path, reject_sepal_width_above=None):
        with open(path, encoding="utf-8") as f:
            tree = json.load(f)
        self.classes = tree["classes"]
        self.features = int(tree["features"])
        self.root = tree["root"]
        self.reject_sepal_width_above = reject_sepal_width_above

    def features_of(self, request):
        """The request's features, or BadRequest."""
        try:
            x = json.loads(request)["x"]
        except (ValueError, KeyError, TypeError) as e:
            raise BadRequest(f'want {{"x": [SL, SW, PL, PW]}} (cm): {e}') from None
        if not (
            isinstance(x, list)
            and len(x) == self.features
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in x)
        ):
            raise BadRequest(f"want {self.features} finite numbers, got {x!r}")
        return x

    def check(self, x):
        """The fault, if the server has it: Rejected for a sepal width
        above the limit (features[1], as the HTTP canary's fault)."""
        limit = self.reject_sepal_width_above
        if limit is not None and x[1] > limit:
            raise Rejected(f"input out of range: sepal width {x[1]} > {limit}")

    def predict(self, x):
        node = self.root
        while "class" not in node:
            node = node["left"] if x[node["feature"]] < node["below"] else node["right"]
        return self.classes[node["class"]]
