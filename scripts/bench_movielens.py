#!/usr/bin/env python3
"""The offline baselines of `plaza-bench video-ranking --part movielens` (benchmark only,
never CI). `plaza-bench` runs it inside the virtualenv it makes under `target/`.

  extract WHEEL DEST     copy ml-100k.inter and ml-100k.item out of the recbole wheel
  train SPLIT_DIR OUT    fit implicit's BPR and ALS on SPLIT_DIR/train.tsv, write every
                         test user's top 10 (already-seen items filtered) to OUT as JSON

The split files are written by the Rust side (`user item timestamp rating`, tab-separated,
MovieLens ids); the metrics are computed there too, from the lists written here, so every
method is scored by the same code. Hyper-parameters are chosen on a validation split cut
from the training split the same way the test split was cut from the data (each user's
last HOLDOUT training interactions), from the small grids below, by NDCG@10; the chosen
configuration is then refit on the whole training split. One thread and fixed seeds, so
a run is repeatable (BPR with several threads is Hogwild and is not).
"""

import json
import math
import os
import sys
import time
import zipfile

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

SEED = 42
TOP = 10
BPR_GRID = [
    {"factors": factors, "learning_rate": learning_rate, "regularization": 0.01, "iterations": 100}
    for factors in (32, 64, 128)
    for learning_rate in (0.01, 0.05)
]
ALS_GRID = [
    {"factors": factors, "regularization": regularization, "alpha": alpha, "iterations": 15}
    for factors in (32, 64, 128)
    for regularization in (0.01, 0.1)
    for alpha in (1.0, 10.0)
]


def extract(wheel, dest):
    os.makedirs(dest, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in ("ml-100k.inter", "ml-100k.item"):
            member = f"recbole/dataset_example/ml-100k/{name}"
            with archive.open(member) as source, open(os.path.join(dest, name), "wb") as target:
                target.write(source.read())


def read_split(path):
    rows = []
    with open(path) as handle:
        for line in handle:
            user, item, timestamp, _rating = line.rstrip("\n").split("\t")
            rows.append((int(user), int(item), int(timestamp)))
    return rows


def cut_last(rows, holdout):
    """Each user's last `holdout` rows (in the file's order, which is time order) apart."""
    by_user = {}
    for row in rows:
        by_user.setdefault(row[0], []).append(row)
    kept, held = [], {}
    for user, own in by_user.items():
        kept.extend(own[:-holdout])
        held[user] = {item for _, item, _ in own[-holdout:]}
    return kept, held


def matrix(rows, users, items):
    import numpy as np
    from scipy.sparse import csr_matrix

    pairs = sorted({(user, item) for user, item, _ in rows})
    data = np.ones(len(pairs), dtype=np.float32)
    return csr_matrix(
        (data, ([user for user, _ in pairs], [item for _, item in pairs])), shape=(users, items), dtype=np.float32
    )


def make_model(kind, params):
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking

    if kind == "bpr":
        return BayesianPersonalizedRanking(**params, num_threads=1, random_state=SEED)
    return AlternatingLeastSquares(**params, num_threads=1, random_state=SEED)


def fit_and_recommend(kind, params, user_items, test_users):
    import numpy as np

    model = make_model(kind, params)
    started = time.perf_counter()
    model.fit(user_items, show_progress=False)
    fitted = time.perf_counter()
    ids = np.array(sorted(test_users), dtype=np.int32)
    recommended, _scores = model.recommend(ids, user_items[ids], N=TOP, filter_already_liked_items=True)
    done = time.perf_counter()
    top = {int(user): [int(item) for item in row] for user, row in zip(ids, recommended)}
    return top, fitted - started, done - fitted


def ndcg(top, held):
    """For choosing hyper-parameters only; the reported metrics are computed in Rust."""
    total = 0.0
    for user, relevant in held.items():
        gains = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(top.get(user, [])) if item in relevant)
        ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), TOP)))
        total += gains / ideal
    return total / max(len(held), 1)


def train(split_dir, out):
    train_rows = read_split(os.path.join(split_dir, "train.tsv"))
    test_rows = read_split(os.path.join(split_dir, "test.tsv"))
    users = max(user for user, _, _ in train_rows + test_rows) + 1
    items = max(item for _, item, _ in train_rows + test_rows) + 1
    test_users = {user for user, _, _ in test_rows}
    holdout = max(1, round(len(test_rows) / max(len(test_users), 1)))
    fit_rows, validation = cut_last(train_rows, holdout)
    fit_matrix = matrix(fit_rows, users, items)
    full_matrix = matrix(train_rows, users, items)
    report = {"holdout": holdout, "seed": SEED}
    for kind, grid in (("bpr", BPR_GRID), ("als", ALS_GRID)):
        tuning_started = time.perf_counter()
        tried = []
        for params in grid:
            top, _, _ = fit_and_recommend(kind, params, fit_matrix, set(validation))
            tried.append({"params": params, "validation_ndcg_at_10": ndcg(top, validation)})
        best = max(tried, key=lambda entry: entry["validation_ndcg_at_10"])
        tuning_seconds = time.perf_counter() - tuning_started
        top, fit_seconds, recommend_seconds = fit_and_recommend(kind, best["params"], full_matrix, test_users)
        report[kind] = {
            "params": best["params"],
            "validation_ndcg_at_10": best["validation_ndcg_at_10"],
            "grid": tried,
            "tuning_seconds": tuning_seconds,
            "fit_seconds": fit_seconds,
            "recommend_seconds": recommend_seconds,
            "top": {str(user): row for user, row in top.items()},
        }
        print(
            f"{kind}: best of {len(grid)} on validation {best['params']} "
            f"(NDCG@10 {best['validation_ndcg_at_10']:.4f}), tuning {tuning_seconds:.1f} s, "
            f"fit {fit_seconds:.2f} s",
            file=sys.stderr,
        )
    with open(out, "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "extract":
        extract(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "train":
        train(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
