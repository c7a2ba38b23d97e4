"""MoRec's adaptive data sampler (middle level of the tri-level scheme, arXiv 2310.13260).

Per objective o (fairness / alignment / revenue) the sampler keeps group sampling weights w_o over
groups 0..G_o (0 = padding). Once per epoch it reads validation signals, moves w_o by one signed-SGD
step and builds the epoch's batches: each step has one B-row sub-batch per objective (a stratified
sample of training rows with stratum shares w_o) followed by one B-row accuracy sub-batch (a shuffled
pass over the training rows).

Pure numpy functions (:func:`signed_sgd_update`, :func:`group_counts`) are the spec's formulas;
:class:`MoRecSampler` holds the state and builds index matrices. No loop runs over users or items (only
over groups); the signals come from :mod:`.signals`.
"""

import numpy as np

from recbole_ext.errors import ConfigError, DatasetError


def signed_sgd_update(weights, signal, alpha):
    """One signed-SGD step of the sampling weights (spec §3.3), then renormalise (+1e-10).

    D = {g: s_g < 0}, A = {g: s_g > 0}. Both non-empty: w_D -= alpha, w_A += alpha, clip at 0.
    Only A: w_A += alpha. Only D: w_D -= min(alpha, w_D) element-wise (fix of quirk M2).
    """
    w = np.asarray(weights, dtype=float).copy()
    s = np.asarray(signal)
    if w.shape != s.shape:
        raise ValueError(f"weights {w.shape} and signal {s.shape} differ in shape")
    dec, inc = s < 0, s > 0
    if dec.any() and inc.any():
        w[dec] -= alpha
        w[inc] += alpha
        w[w <= 0] = 0.0
    elif inc.any():
        w[inc] += alpha
    elif dec.any():
        w[dec] -= np.minimum(alpha, w[dec])
    return w / (w.sum() + 1e-10)


def group_counts(weights, batch_size, allocation="faithful"):
    """Rows per group in a B-row sub-batch. ``faithful`` (quirk M3): n_g = floor(w_g B) for all but the
    last group, which takes the remainder; ``largest_remainder``: Hamilton apportionment."""
    w = np.asarray(weights, dtype=float)
    if allocation == "faithful":
        counts = np.floor(w * batch_size).astype(np.int64)
        counts[-1] = batch_size - counts[:-1].sum()
        return counts
    if allocation == "largest_remainder":
        share = w / w.sum() * batch_size
        counts = np.floor(share).astype(np.int64)
        rest = batch_size - counts.sum()
        order = np.argsort(-(share - counts), kind="stable")
        counts[order[:rest]] += 1
        return counts
    raise ConfigError(f"morec_batch_allocation must be 'faithful' (M3) or 'largest_remainder', got {allocation!r}")


class MoRecSampler:
    """State of the adaptive sampler for one training set.

    Args:
        train_items: target item (internal id) of every training row, int array [|T|].
        item2group: {objective: int array [n_items], group of each item (0 = PAD)}.
        initial_weights: {objective: float array [G_o + 1]}.
        alpha: signed-SGD step size ``morec_alpha``.
        batch_size: B.
        allocation: 'faithful' | 'largest_remainder'.
        seed: random seed of the batch construction.
    """

    def __init__(self, train_items, item2group, initial_weights, alpha, batch_size, allocation="faithful", seed=2022):
        train_items = np.asarray(train_items, dtype=np.int64)
        self.n_train = len(train_items)
        if self.n_train == 0:
            raise DatasetError("MoRec: the training split is empty")
        self.objectives = list(item2group)
        self.alpha = float(alpha)
        self.batch_size = int(batch_size)
        self.allocation = allocation
        self.rng = np.random.default_rng(seed)
        self.weights = {o: np.asarray(initial_weights[o], dtype=float).copy() for o in self.objectives}
        self.group_rows = {}
        for o in self.objectives:
            groups = np.asarray(item2group[o], dtype=np.int64)[train_items]
            order = np.argsort(groups, kind="stable")
            bounds = np.searchsorted(groups[order], np.arange(len(self.weights[o]) + 1))
            self.group_rows[o] = [order[bounds[g]:bounds[g + 1]] for g in range(len(self.weights[o]))]
        self._acc_perm = self.rng.permutation(self.n_train)
        self._acc_pos = 0

    @property
    def steps_per_epoch(self):
        return -(-self.n_train // self.batch_size)

    def update(self, signals):
        """Signed-SGD step for each objective with a signal (dict objective -> signal vector)."""
        for o, signal in signals.items():
            self.weights[o] = signed_sgd_update(self.weights[o], signal, self.alpha)

    def objective_indices(self, objective, steps):
        """[steps, B] training-row indices for ``objective``: per step ``group_counts`` rows of each group,
        drawn uniformly with replacement from its training rows (from all rows if it has none); groups
        concatenated in id order, steps permuted."""
        counts = group_counts(self.weights[objective], self.batch_size, self.allocation)
        columns = []
        for g in range(1, len(counts)):  # padding group 0 never holds training rows
            n = int(counts[g])
            if n <= 0:
                continue
            rows = self.group_rows[objective][g]
            if len(rows):
                picked = rows[self.rng.integers(0, len(rows), size=(steps, n))]
            else:
                picked = np.resize(self.rng.permutation(self.n_train), steps * n).reshape(steps, n)
            columns.append(picked)
        n0 = int(counts[0])
        if n0 > 0:  # only reachable with non-zero padding weight; UniRec draws these from all rows
            columns.insert(0, self.rng.integers(0, self.n_train, size=(steps, n0)))
        matrix = np.concatenate(columns, axis=1)
        return matrix[self.rng.permutation(steps)]

    def accuracy_indices(self, steps):
        """[steps, B] indices of a shuffled pass over the training rows, wrapping around."""
        need = steps * self.batch_size
        out = np.empty(need, dtype=np.int64)
        filled = 0
        while filled < need:
            take = min(need - filled, self.n_train - self._acc_pos)
            out[filled:filled + take] = self._acc_perm[self._acc_pos:self._acc_pos + take]
            filled += take
            self._acc_pos += take
            if self._acc_pos == self.n_train:
                self._acc_perm = self.rng.permutation(self.n_train)
                self._acc_pos = 0
        return out.reshape(steps, self.batch_size)

    def epoch_batches(self):
        """[S, (|O| + 1) * B] row indices: objective sub-batches in order, accuracy sub-batch last."""
        steps = self.steps_per_epoch
        parts = [self.objective_indices(o, steps) for o in self.objectives]
        parts.append(self.accuracy_indices(steps))
        return np.concatenate(parts, axis=1)
