"""Convert BaM's data files into RecBole atomic files.

BaM (snudatalab/BaM, ``src/utils.py: data_partition``) reads one extension-less text file per dataset:
one ``user_id item_id`` pair per line, single-space separated, 1-based ids, and each user's lines in
chronological order (a user's lines need not be contiguous). Some versions carry an optional third
token (an int or ``none``), parsed and ignored. The files have no timestamp, while RecBole's
sequential split orders by time, so the converter writes the line number as ``timestamp:float``:
order-preserving within every user, which is all the leave-one-out split uses.

    python -m recbole_ext.data.bam_converter data/books dataset/ --name books

writes ``dataset/books/books.inter`` (``user_id:token item_id:token timestamp:float``); then
``--dataset=books --data_path=dataset/`` with ``properties/bam_ml-100k.yaml``'s evaluation settings.

Checkpoint mode imports a released run (``runs/<dataset>/<run>/model.pt``, the ComiRec-SA / REMI
state dict: ``embeddings.weight``, ``position_embedding``, ``linear1.0.weight``, ``linear2.weight``,
``sample_loss.logprob_noise``, plus ``l1.*`` / ``l2.*`` for BaM_l) into a recbole_ext checkpoint:

    python -m recbole_ext.data.bam_converter --checkpoint runs/books/BaM_p_T1/model.pt \
        --dataset books --data_path dataset/ --config_files properties/bam_ml-100k.yaml --out books-BaM_p.pth
    python run_recbole.py --model=BaM_REMI --dataset=books --data_path=dataset/ \
        --config_files=properties/bam_ml-100k.yaml --MAX_ITEM_LIST_LENGTH=50 --resume_checkpoint=books-BaM_p.pth --epochs=0

The item rows are reordered through RecBole's id remapping (original id = the item token of the
converted ``.inter`` file); the sizes (``embedding_size``, ``interest_num``, ``MAX_ITEM_LIST_LENGTH``,
BaM_l's ``linear_size``) are read from the tensors' shapes. ``sample_loss.logprob_noise`` is BaM's uniform
log q (a constant that cancels), checked for shape and dropped. Any missing, unknown or mis-shaped key is
refused by name. The dataset is built and split here, so the checkpoint carries the split fingerprint that
``--resume_checkpoint`` / ``load_data_and_model`` check.
"""

import argparse
import os
import time

import numpy as np
import pandas as pd
import recbole
import torch
from recbole.utils import init_seed

from recbole_ext.checkpoint import FORMAT_NAME, FORMAT_VERSION, plain_config, rng_state
from recbole_ext.config import Config
from recbole_ext.data.utils import create_dataset, data_preparation
from recbole_ext.distributed import LAUNCH_KEYS
from recbole_ext.errors import CheckpointError, DatasetError, DatasetNotFoundError
from recbole_ext.io import atomic_torch_save, atomic_write


def read_bam_file(path):
    """Read a BaM data file into a DataFrame (``user``, ``item``, ``order``), validating every line."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"BaM data file '{path}' does not exist; pass the path of e.g. data/books")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()
    tokens = [line.split() for line in lines]
    widths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    bad = np.flatnonzero((widths != 0) & ((widths < 2) | (widths > 3)))
    if bad.size:
        i = int(bad[0])
        raise DatasetError(
            f"{path}:{i + 1}: expected 'user_id item_id' (optionally a third token), got {lines[i]!r}"
        )
    keep = np.flatnonzero(widths > 0)
    if keep.size == 0:
        raise DatasetError(f"{path}: no 'user_id item_id' lines found")
    rows = [tokens[i][:2] for i in keep]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    for col in ("user", "item"):
        values = pd.to_numeric(frame[col], errors="coerce")
        wrong = values.isna().to_numpy() | (values.fillna(0).to_numpy() < 1)
        if wrong.any():
            i = int(keep[np.flatnonzero(wrong)[0]])
            raise DatasetError(f"{path}:{i + 1}: {col} id must be an integer >= 1 (1-based ids), got {lines[i]!r}")
        frame[col] = values.astype(np.int64)
    frame["order"] = keep.astype(np.float64)  # line number: chronological within each user
    return frame


def convert(path, out_dir, name=None):
    """Write ``<out_dir>/<name>/<name>.inter``; return ``{data_path, dataset, inter_file, users, items, interactions}``."""
    name = name or os.path.basename(os.path.normpath(path))
    frame = read_bam_file(path)
    inter_file = os.path.join(out_dir, name, f"{name}.inter")
    out = pd.DataFrame(
        {"user_id:token": frame["user"], "item_id:token": frame["item"], "timestamp:float": frame["order"]}
    )
    atomic_write(inter_file, lambda f: out.to_csv(f, sep="\t", index=False, float_format="%.0f"), mode="w")
    return {
        "data_path": os.path.abspath(out_dir),
        "dataset": name,
        "inter_file": inter_file,
        "users": int(frame["user"].nunique()),
        "items": int(frame["item"].nunique()),
        "interactions": len(frame),
    }


# ----------------------------------------------------------------------------------------------
# checkpoint mode: the original's model.pt -> a recbole_ext checkpoint
# ----------------------------------------------------------------------------------------------
ORIGINAL_KEYS = ("embeddings.weight", "position_embedding", "linear1.0.weight", "linear2.weight",
                 "sample_loss.logprob_noise")
BAM_L_KEYS = ("l1.weight", "l1.bias", "l2.weight", "l2.bias")


def read_original_state(path):
    """The original's state dict (``torch.load(weights_only=True)``: nothing in the file is executed)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"original BaM checkpoint '{path}' does not exist (runs/<dataset>/<run>/model.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (any unreadable file: say which and why)
        raise CheckpointError(f"cannot read '{path}' as a weights-only torch state dict: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"'{path}' is not a state dict of tensors (the original saves model.state_dict())")
    missing = [k for k in ORIGINAL_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"'{path}' lacks key '{missing[0]}' of BaM's ComiRec-SA / REMI model "
                              f"(expected {list(ORIGINAL_KEYS)}, plus {list(BAM_L_KEYS)} for BaM_l)")
    has_l = [k in state for k in BAM_L_KEYS]
    if any(has_l) and not all(has_l):
        raise CheckpointError(f"'{path}' has only some of BaM_l's projection keys: lacks "
                              f"'{BAM_L_KEYS[has_l.index(False)]}'")
    unknown = sorted(set(state) - set(ORIGINAL_KEYS) - set(BAM_L_KEYS))
    if unknown:
        raise CheckpointError(f"'{path}' has key '{unknown[0]}' that BaM's ComiRec-SA / REMI model does not have "
                              "(a MIND checkpoint? only comirec / remi runs are importable)")
    return state


def original_sizes(state):
    """Model sizes read from the shapes (``embedding_size``, ``interest_num``, ``MAX_ITEM_LIST_LENGTH``,
    ``linear_size`` for BaM_l); a shape that disagrees with the others is refused by key."""
    rows, d = _shape(state, "embeddings.weight", 2)
    _, length, _ = _expect(state, "position_embedding", (1, None, d))
    _expect(state, "linear1.0.weight", (4 * d, d))
    k = _shape(state, "linear2.weight", 2)[0]
    _expect(state, "linear2.weight", (k, 4 * d))
    _expect(state, "sample_loss.logprob_noise", (rows,))
    sizes = {"embedding_size": d, "interest_num": k, "MAX_ITEM_LIST_LENGTH": length, "add_pos": True}
    if "l1.weight" in state:
        linear = _shape(state, "l1.weight", 2)[0]
        for key, shape in (("l1.weight", (linear, d)), ("l1.bias", (linear,)), ("l2.weight", (linear, d)),
                           ("l2.bias", (linear,))):
            _expect(state, key, shape)
        sizes.update(selection="l", linear_size=linear)
    return sizes


def _shape(state, key, dims):
    shape = tuple(state[key].shape)
    if len(shape) != dims:
        raise CheckpointError(f"key '{key}' has shape {shape}; expected {dims} dimensions")
    return shape


def _expect(state, key, expected):
    shape = tuple(state[key].shape)
    if len(shape) != len(expected) or any(e is not None and e != s for s, e in zip(shape, expected)):
        want = tuple("*" if e is None else e for e in expected)
        raise CheckpointError(f"key '{key}' has shape {shape}; expected {want} from the other tensors")
    return shape


def remap_item_rows(embeddings, item_tokens):
    """Rows of the original table in RecBole's internal item order: internal id ``i`` (token = original id)
    gets original row ``int(token)``; row 0 (PAD) keeps the original's row 0 (quirk Q1: non-zero)."""
    tokens = np.asarray(item_tokens[1:])
    try:
        original_ids = tokens.astype(np.int64)
    except ValueError as err:
        raise CheckpointError(f"item tokens must be BaM's integer item ids to map the embedding rows: {err}") from err
    bad = np.flatnonzero((original_ids < 1) | (original_ids >= embeddings.shape[0]))
    if bad.size:
        raise CheckpointError(
            f"item id {tokens[bad[0]]} of the dataset has no row in 'embeddings.weight' ({embeddings.shape[0]} rows, "
            "ids 1.."
            f"{embeddings.shape[0] - 1}): the checkpoint belongs to another dataset"
        )
    index = torch.from_numpy(np.concatenate(([0], original_ids)))
    return embeddings.index_select(0, index).clone()


def to_recbole_state(state, item_tokens):
    """The recbole_ext state dict (ComiRec / REMI parameter names) of the original's ``state``."""
    mapped = {"item_embedding.weight": remap_item_rows(state["embeddings.weight"], item_tokens)}
    for key in ("position_embedding", "linear1.0.weight", "linear2.weight") + BAM_L_KEYS:
        if key in state:
            mapped[key] = state[key].clone()
    return mapped


def import_checkpoint(checkpoint, dataset, out, model="BaM_REMI", data_path=None, config_files=None, config_dict=None):
    """Convert the original's ``checkpoint`` for ``dataset``; write the recbole_ext checkpoint ``out``
    (atomically) and return its path."""
    state = read_original_state(checkpoint)
    settings = dict(original_sizes(state))
    if data_path:
        settings["data_path"] = data_path
    settings.update(config_dict or {})
    config = Config(model, dataset, config_file_list=config_files, config_dict=settings, cmd_args=[])
    if config.model_class.__name__ not in ("ComiRec", "REMI"):
        raise CheckpointError(f"the original's checkpoints are ComiRec-SA / REMI networks; model '{model}' is a "
                              f"{config.model_class.__name__} (use BaM_REMI, REMI, BaM_ComiRec or ComiRec)")
    init_seed(config["seed"], config["reproducibility"])  # as quick_start.setup_run: the same split
    data = create_dataset(config)
    train_data, _, _ = data_preparation(config, data)
    net = config.model_class(config, train_data._dataset)
    mapped = to_recbole_state(state, data.field2id_token[data.iid_field])
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    for key in sorted(set(expected) | set(mapped)):
        if key not in mapped or key not in expected or tuple(mapped[key].shape) != expected[key]:
            raise CheckpointError(f"converted key '{key}' does not fit {model}: shape "
                                  f"{tuple(mapped[key].shape) if key in mapped else None} vs {expected.get(key)}")
    net.load_state_dict(mapped)
    result = checkpoint_contents(config, net, checkpoint)
    atomic_torch_save(result, out)
    return out


def checkpoint_contents(config, net, source):
    """A recbole_ext checkpoint (``recbole_ext.checkpoint`` format) of the imported ``net``: no optimiser, epoch -1
    (``--resume_checkpoint`` then starts at epoch 0, so ``--epochs=0`` only evaluates)."""
    return {
        "meta": {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "recbole_version": str(recbole.__version__),
            "torch_version": str(torch.__version__), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "model": config["model"], "dataset": config["dataset"], "trainer": "bam_converter",
            "split_fingerprint": dict(config["split_fingerprint"]), "source": os.path.abspath(source),
        },
        "config": plain_config(config),
        "external_config": plain_config(
            {k: v for k, v in config.external_config_dict.items() if k not in LAUNCH_KEYS}),
        "epoch": -1, "cur_step": 0, "best_valid_score": None, "best_valid_result": None,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "other_parameter": None, "optimizer": None, "rng": rng_state(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", help="BaM data file (one 'user item' pair per line, chronological per user)")
    parser.add_argument("out_dir", nargs="?", help="folder that receives <name>/<name>.inter (RecBole's data_path)")
    parser.add_argument("--name", default=None, help="dataset name (default: the file's name)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint mode: the original's runs/<ds>/<run>/model.pt")
    parser.add_argument("--dataset", default=None, help="checkpoint mode: the converted dataset's name")
    parser.add_argument("--data_path", default=None, help="checkpoint mode: RecBole's data_path (out_dir above)")
    parser.add_argument("--model", default="BaM_REMI", help="checkpoint mode: BaM_REMI | REMI | BaM_ComiRec | ComiRec")
    parser.add_argument("--config_files", default=None, help="checkpoint mode: space-separated config files of the runs")
    parser.add_argument("--out", default=None, help="checkpoint mode: the recbole_ext checkpoint to write")
    args = parser.parse_args(argv)
    if args.checkpoint:
        if not (args.dataset and args.out):
            parser.error("--checkpoint needs --dataset and --out")
        files = args.config_files.split() if args.config_files else None
        out = import_checkpoint(args.checkpoint, args.dataset, args.out, args.model, args.data_path, files)
        print(f"wrote {out}; score it with run_recbole.py --model={args.model} --dataset={args.dataset} "
              f"--resume_checkpoint={out} --epochs=0 (same config files and data_path)")
        return
    if not (args.path and args.out_dir):
        parser.error("give a data file and an output folder, or --checkpoint")
    info = convert(args.path, args.out_dir, args.name)
    print(
        f"wrote {info['inter_file']}: {info['users']} users, {info['items']} items, "
        f"{info['interactions']} interactions; use --dataset={info['dataset']} --data_path={info['data_path']}"
    )


if __name__ == "__main__":
    main()
