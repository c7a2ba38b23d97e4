"""``create_dataset`` and ``data_preparation`` that know recbole_ext's models.

* Dataset class: the model's entry in :data:`recbole_ext.registry.DATASETS` first, then RecBole's
  ``<Model>Dataset``, else by model type — always with the atomic-file checks of
  :mod:`recbole_ext.data.dataset`.
* Train loader: RecBole picks ``UserDataLoader`` only for a hard-coded list of model *names*
  (``recbole.data.utils.get_dataloader``). A model class declares its own with the attribute
  ``train_loader = "user"`` (autoencoder-style) or a DataLoader class; everything else gets RecBole's
  own train loader (``recbole.data.utils.get_dataloader``).
* Split: ``bam_split: original`` swaps RecBole's leave-one-out for BaM's (:mod:`recbole_ext.data.bam_split`).
* Validation split: the training dataset keeps a reference to it (:func:`link_valid_split`).
* Full-sort evaluation: :class:`~recbole_ext.data.dataloader.BlockedFullSortEvalDataLoader` scores users in
  blocks sized by ``eval_block_mb`` (0 = RecBole's batching). RecBole's pickled-loader path (``save_dataloaders``
  or a saved file present) and knowledge-graph models still go through RecBole's ``data_preparation``.
* Split fingerprint: ``data_preparation`` records :func:`split_fingerprint` in
  ``config["split_fingerprint"]``; checkpoints carry it and refuse to meet another split.
"""

import hashlib
import os
from logging import getLogger

import numpy as np

import recbole.data.dataset as recbole_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.data.dataloader import NegSampleEvalDataLoader, UserDataLoader
from recbole.data.utils import create_samplers, get_dataloader
from recbole.utils import ModelType

from recbole_ext import registry
from recbole_ext.data import bam_split
from recbole_ext.data import dataset as ext_dataset
from recbole_ext.data.dataloader import BlockedFullSortEvalDataLoader
from recbole_ext.errors import ConfigError

_TYPE_TO_CLASS = {
    ModelType.GENERAL: ext_dataset.Dataset,
    ModelType.SEQUENTIAL: ext_dataset.SequentialDataset,
    ModelType.CONTEXT: ext_dataset.Dataset,
    ModelType.KNOWLEDGE: ext_dataset.KnowledgeBasedDataset,
    ModelType.TRADITIONAL: ext_dataset.Dataset,
    ModelType.DECISIONTREE: ext_dataset.Dataset,
}


def dataset_class_for(config):
    own = registry.dataset_class(config["model"])
    if own is not None:
        return ext_dataset.checked_dataset_class(own)
    name = registry.resolve_alias(config["model"]) + "Dataset"
    if isinstance(getattr(recbole_dataset, name, None), type):
        return ext_dataset.checked_dataset_class(getattr(recbole_dataset, name))
    return _TYPE_TO_CLASS[config["MODEL_TYPE"]]


def create_dataset(config):
    """Build the dataset of ``config`` (never downloads; checks the atomic files)."""
    return dataset_class_for(config)(config)


def _train_loader_class(config):
    declared = getattr(config.model_class, "train_loader", None)
    if declared == "user":
        return UserDataLoader
    if isinstance(declared, type):
        return declared
    return None


def data_preparation(config, dataset):
    """Split ``dataset`` and build (train, valid, test) loaders, honouring the model's train loader;
    record the split's fingerprint in ``config["split_fingerprint"]``."""
    loaders = _build_loaders(config, dataset)
    link_valid_split(loaders)
    config["split_fingerprint"] = split_fingerprint(dataset, loaders)
    return loaders


def link_valid_split(loaders):
    """Hand the training dataset the validation split's interactions (``split_valid_inter``, a reference):
    statistics counted on train + valid (MoRec's p*, UniRec's user_history) are computed where only the
    training data is at hand (metric inputs, ``ExtCollector.data_collect``)."""
    train, valid = (getattr(loader, "_dataset", None) for loader in loaders[:2])
    if train is not None and valid is not None:
        train.split_valid_inter = valid.inter_feat


def split_fingerprint(dataset, loaders):
    """What identifies a train/valid/test split: the SHA-256 of each part's user and item ids (with its row
    count) and of the token vocabularies that give the ids their meaning, and one SHA-256 over all.

    ``{"sha256", "vocab", "train": {"rows", "sha256"}, "valid": ..., "test": ...}``; vectorised (one pass
    over the id arrays)."""
    fields = [f for f in (dataset.uid_field, dataset.iid_field) if f and f in dataset.field2id_token]
    vocab = hashlib.sha256()
    for field in fields:
        vocab.update(f"{field}\0".encode() + "\0".join(map(str, dataset.field2id_token[field])).encode() + b"\1")
    result = {"vocab": vocab.hexdigest()}
    total = hashlib.sha256(result["vocab"].encode())
    for name, loader in zip(("train", "valid", "test"), loaders):
        inter = getattr(getattr(loader, "_dataset", None), "inter_feat", None)
        rows = 0 if inter is None else len(inter)
        sha = hashlib.sha256(f"{name}:{rows}".encode())
        for field in fields:
            if inter is not None and field in inter.interaction:
                sha.update(field.encode() + np.ascontiguousarray(inter[field].numpy(), dtype=np.int64).tobytes())
        result[name] = {"rows": rows, "sha256": sha.hexdigest()}
        total.update(result[name]["sha256"].encode())
    result["sha256"] = total.hexdigest()
    return result


def _saved_loaders_in_play(config):
    """RecBole saves or reloads pickled loaders (``save_dataloaders``, or a saved file at its path)."""
    default_file = os.path.join(config["checkpoint_dir"], f'{config["dataset"]}-for-{config["model"]}-dataloader.pth')
    return bool(config["save_dataloaders"]) or os.path.exists(config["dataloaders_save_path"] or default_file)


def _build_loaders(config, dataset):
    train_loader = _train_loader_class(config)
    recbole_split = bam_split.split_choice(config) == "recbole"  # original: BaM's split for short users
    if not recbole_split and (config["MODEL_TYPE"] == ModelType.KNOWLEDGE or _saved_loaders_in_play(config)):
        raise ConfigError(
            "bam_split: original cannot be combined with a knowledge-graph model or RecBole's saved dataloaders "
            "(save_dataloaders / dataloaders_save_path): those go through RecBole's own split; set bam_split: recbole"
        )
    recbole_pickles = train_loader is None and recbole_split and _saved_loaders_in_play(config)
    if recbole_pickles or config["MODEL_TYPE"] == ModelType.KNOWLEDGE:
        return recbole_data_preparation(config, dataset)
    train_loader = train_loader or get_dataloader(config, "train")
    train_dataset, valid_dataset, test_dataset = built = bam_split.build(config, dataset)
    train_sampler, valid_sampler, test_sampler = create_samplers(config, dataset, built)
    train_data = train_loader(config, train_dataset, train_sampler, shuffle=config["shuffle"])

    def eval_loader(phase):
        full = config["eval_args"]["mode"][phase] == "full"
        return BlockedFullSortEvalDataLoader if full else NegSampleEvalDataLoader  # full: users in eval_block_mb blocks

    valid_data = eval_loader("valid")(config, valid_dataset, valid_sampler, shuffle=False)
    test_data = eval_loader("test")(config, test_dataset, test_sampler, shuffle=False)
    getLogger().info(f"[Training]: {train_loader.__name__} with train_batch_size = {config['train_batch_size']}")
    return train_data, valid_data, test_data
