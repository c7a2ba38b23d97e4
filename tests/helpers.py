"""Small real-format atomic datasets written on the fly for tests."""

import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_tiny_dataset(root, name="tiny", n_users=40, n_items=30, per_user=8, seed=0, item_file=True):
    """Write ``<root>/<name>/<name>.inter`` (+ ``.item`` with price and genre) and return ``root``.

    Users prefer items of "their" genre so that a model can learn something.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    genres = np.arange(n_items) % 3
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for user in range(1, n_users + 1):
        liked = np.flatnonzero(genres == user % 3) + 1
        items = rng.choice(liked, size=min(per_user, len(liked)), replace=False)
        for t, item in enumerate(items):
            lines.append(f"{user}\t{item}\t{rng.integers(1, 6)}\t{1000 + 10 * user + t}")
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if item_file:
        rows = ["item_id:token\tprice:float\tgenre:token"]
        rows += [f"{i}\t{1.5 * i:.2f}\tg{genres[i - 1]}" for i in range(1, n_items + 1)]
        with open(os.path.join(folder, f"{name}.item"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return root


def tiny_config(root, quiet_config, **extra):
    config = dict(quiet_config)
    config.update(
        {
            "data_path": str(root),
            "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "price", "genre"]},
            "epochs": 2,
            "train_batch_size": 64,
            "eval_batch_size": 64,
            "metrics": ["Recall", "NDCG"],
            "valid_metric": "NDCG@5",
            "topk": [5],
            "embedding_size": 8,
        }
    )
    config.update(extra)
    return config


def run_cli(args, cwd=None, timeout=300):
    """Run ``run_recbole.py`` with ``args`` in a subprocess (one thread, this checkout importable)."""
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "run_recbole.py")] + list(args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
