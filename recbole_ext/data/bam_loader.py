"""BaM's training sampler as a RecBole train loader.

The original (``src/utils.py: DataIterator``) draws each batch as ``train_batch_size`` user ids
uniformly *with replacement*, then for each user one target position uniformly among its training
positions (history = the items before it) — uniform over users, then positions, not over interactions —
and counts iterations, not epochs. RecBole's sequential dataset already holds one row per (user,
target position); drawing rows with replacement with weight ``1 / (rows of that user)`` is exactly that
distribution. One RecBole "epoch" is ``iters_per_epoch`` batches (the original validates every 1000).

``train_sampler: user`` (default of the multi-interest models) uses it; ``train_sampler: interaction``
falls back to RecBole's own loader (every row once per epoch, shuffled).
"""

from logging import getLogger

import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.data.transform import construct_transform
from recbole.utils import ModelType
from torch.utils.data import DataLoader, WeightedRandomSampler

from recbole_ext import distributed, options
from recbole_ext.errors import ConfigError

TRAIN_SAMPLERS = ("user", "interaction")


class BaMTrainDataLoader(TrainDataLoader):
    def __init__(self, config, dataset, sampler, shuffle=False):
        mode = options.check_choices(config, {"train_sampler": TRAIN_SAMPLERS}, "BaMTrainDataLoader")["train_sampler"]
        if mode == "interaction":
            super().__init__(config, dataset, sampler, shuffle=shuffle)
            return
        # multi-process (DDP): each process draws its own i.i.d. rows from the same distribution,
        # train_batch_size / world_size per step with its own generator, so that the rows of one
        # synchronised step are a train_batch_size draw from BaM's distribution, as in one process
        world_size, rank = distributed.world_size(), distributed.rank()
        iters = int(config["iters_per_epoch"])
        if iters < 1:
            raise ConfigError(f"iters_per_epoch must be >= 1, got {iters}")
        # the attributes TrainDataLoader / AbstractDataLoader set, then a DataLoader over a weighted sampler
        self.logger = getLogger()
        self._set_neg_sample_args(config, dataset, config["MODEL_INPUT_TYPE"], config["train_neg_sample_args"])
        self.sample_size = len(dataset)
        self.shuffle, self.config, self._dataset, self._sampler = shuffle, config, dataset, sampler
        self._batch_size = self.step = self.model = None
        self._init_batch_size_and_step()
        self.step = max(1, self.step // world_size)
        self.generator = torch.Generator()
        self.generator.manual_seed(config["seed"] + rank)
        self.transform = construct_transform(config)
        self.is_sequential = config["MODEL_TYPE"] == ModelType.SEQUENTIAL
        users = dataset.inter_feat[config["USER_ID_FIELD"]]
        rows_per_user = torch.bincount(users)
        weights = 1.0 / rows_per_user[users].double()  # uniform over users, then over their positions
        index_sampler = _EpochWeightedSampler(weights, iters * self.step, replacement=True, generator=self.generator)
        DataLoader.__init__(
            self,
            dataset=list(range(self.sample_size)),
            batch_size=self.step,
            collate_fn=self.collate_fn,
            num_workers=config["worker"],
            sampler=index_sampler,
        )


class _EpochWeightedSampler(WeightedRandomSampler):
    """WeightedRandomSampler with the ``set_epoch`` that RecBole's DDP training loop calls (a no-op:
    the generator's state already differs from one epoch to the next)."""

    def set_epoch(self, epoch):
        pass
