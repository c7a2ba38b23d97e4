"""Data side of MoRec (multi-objective post-training, arXiv 2310.13260, WWW 2024).

* item side information read from a RecBole dataset: revenue weight (price), fairness group,
  alignment group (:func:`item_weight`, :func:`item_groups`), each a tensor indexed by internal item
  id with row 0 = PAD (weight 0, group 0);
* the expected alignment distribution p* (:func:`expected_align_distribution`);
* ``group_item_by_attr`` (UniRec's equal-count binning, with its quirk M6 as default);
* :func:`convert_morec_csv`: UniRec/MoRec CSV layout (train/valid/test + ``item_meta_morec.csv`` +
  expected distribution) -> RecBole atomic files;
* :func:`prepare_ml100k`: ml-100k with fairness group = first genre, alignment group = 10
  popularity bins and a **synthetic** seeded price (ml-100k has no prices).

Group ids inside RecBole are 1..G (0 = PAD), stored as ``float`` columns of the ``.item`` file so
that RecBole does not re-map them (token fields would be renumbered by first appearance).
"""

import os

import numpy as np
import pandas as pd
import torch

from recbole_ext.data.dataset import require_side_info
from recbole_ext.errors import ConfigError, DatasetError
from recbole_ext.io import atomic_write, atomic_write_text
from recbole_ext.options import check_choices

FIELD_KEYS = {"weight": "morec_weight_field", "fair": "morec_fair_field", "align": "morec_align_field"}


def field_name(config, kind):
    return config[FIELD_KEYS[kind]]


def _item_column(dataset, config, kind):
    field = field_name(config, kind)
    feat = dataset.item_feat
    if feat is None or field not in feat.interaction:
        raise DatasetError(
            f"MoRec needs the item field '{field}' ({FIELD_KEYS[kind]}) but dataset '{dataset.dataset_name}' has "
            f"no such column in its .item file: add '{field}:float' to {dataset.dataset_name}.item and to "
            f"load_col: {{item: [item_id, {field}, ...]}} (or point {FIELD_KEYS[kind]} at the right field; "
            "recbole_ext.data.morec_data.prepare_ml100k / convert_morec_csv write such files)"
        )
    require_side_info(dataset, "item", f"MoRec (item field '{field}')")
    column = feat[field]
    if column.dim() != 1:
        raise DatasetError(f"item field '{field}' must be a single number per item (declare it ':float')")
    return column


def item_weight(dataset, config):
    """Revenue weight (price) per internal item id, float tensor; PAD = 0."""
    weight = _item_column(dataset, config, "weight").double().clone()
    weight[0] = 0.0
    if torch.isnan(weight).any() or (weight < 0).any():
        raise DatasetError(f"item field '{field_name(config, 'weight')}' has NaN or negative values")
    return weight


def item_groups(dataset, config, kind):
    """Group id (1..G, PAD = 0) per internal item id for ``kind`` in {'fair', 'align'}; checks that
    every item has a group and every group 1..G has at least one item."""
    column = _item_column(dataset, config, kind)
    groups = column.round().long().clone()
    groups[0] = 0
    field = field_name(config, kind)
    if not torch.allclose(column[1:].double(), groups[1:].double()):
        raise DatasetError(f"item field '{field}' must hold integer group ids 1..G")
    bad = torch.nonzero(groups[1:] <= 0).flatten() + 1
    if len(bad):
        tokens = dataset.id2token(dataset.iid_field, bad[:5].numpy())
        raise DatasetError(
            f"{len(bad)} items have no '{field}' group (value <= 0, e.g. items {list(tokens)}): every item "
            f"needs a group id 1..G in {dataset.dataset_name}.item (0 is reserved for padding)"
        )
    n_groups = int(groups.max())
    sizes = torch.bincount(groups, minlength=n_groups + 1)
    empty = (torch.nonzero(sizes[1:] == 0).flatten() + 1).tolist()
    if empty:
        raise DatasetError(
            f"'{field}' groups {empty} have no items (groups must be numbered 1..G without gaps; "
            f"largest id is {n_groups}): renumber the groups in {dataset.dataset_name}.item"
        )
    return groups


def _user_item_keys(inter, uid, iid, list_field, n_items):
    """``user * n_items + item`` of every (user, item) of ``inter``: the row targets and, for sequential
    datasets, the items of the rows' item lists."""
    keys = [inter[uid].long() * n_items + inter[iid].long()]
    if list_field and list_field in inter.interaction:
        seq = inter[list_field].long()
        users = inter[uid].long().unsqueeze(1).expand_as(seq)
        keys.append((users * n_items + seq)[seq > 0])
    return torch.cat(keys)


def history_item_counts(dataset, valid_inter=None):
    """pop(i): number of distinct users with item i in their history, per internal item id (PAD = 0).
    The history is the training split (targets, and item lists of sequential datasets) plus
    ``valid_inter`` when given (UniRec's user_history = train + valid)."""
    uid, iid, n_items = dataset.uid_field, dataset.iid_field, dataset.item_num
    list_field = getattr(dataset, "item_id_list_field", None)
    keys = [_user_item_keys(dataset.inter_feat, uid, iid, list_field, n_items)]
    if valid_inter is not None:
        keys.append(_user_item_keys(valid_inter, uid, iid, list_field, n_items))
    items = torch.unique(torch.cat(keys)) % n_items
    counts = torch.bincount(items, minlength=n_items).double()
    counts[0] = 0.0
    return counts


def _align_counts(dataset, config, valid_inter):
    """Item counts behind the default p*: ``morec_align_counts`` train_valid (UniRec) or train."""
    source = check_choices(config, {"morec_align_counts": ("train_valid", "train")}, "MoRec p*")["morec_align_counts"]
    if source == "train":
        return history_item_counts(dataset)
    if valid_inter is None:
        valid_inter = getattr(dataset, "split_valid_inter", None)
    if valid_inter is None:
        raise ConfigError(
            "morec_align_counts: train_valid counts p* on train + valid, but the validation split of this training "
            "data is unknown: build the loaders with recbole_ext.data_preparation (which links it), or set "
            "morec_align_counts: train to count the training split only"
        )
    return history_item_counts(dataset, valid_inter)


def expected_align_distribution(dataset, config, align_groups=None, valid_inter=None):
    """p* as a float64 tensor of length G+1 (index 0 = 0).

    ``morec_align_dist``: ``None`` -> each group's share of pop(i) summed over its items, pop(i) = users
    with item i in their history: train + valid (``morec_align_counts: train_valid``, UniRec's
    user_history; ``valid_inter`` or the split linked by ``data_preparation``) or the training split
    (``train``); a list of G proportions (group 1..G); or a CSV ``group_id,proportion`` path. File ids
    are the 1-based groups of the ``.item`` file (fix of M5); ``morec_align_dist_zero_based: true``
    reads UniRec-convention files (id g -> group g+1)."""
    if align_groups is None:
        align_groups = item_groups(dataset, config, "align")
    n_groups = int(align_groups.max())
    spec = config["morec_align_dist"]
    if spec is None:
        counts = _align_counts(dataset, config, valid_inter)
        dist = torch.zeros(n_groups + 1, dtype=torch.float64).index_add_(0, align_groups, counts)
        dist[0] = 0.0
        return dist / dist.sum()
    if isinstance(spec, str):
        if not os.path.isfile(spec):
            raise ConfigError(f"morec_align_dist: file not found: {spec} (a CSV with columns group_id,proportion)")
        table = pd.read_csv(spec)
        if list(table.columns[:2]) != ["group_id", "proportion"]:
            raise DatasetError(f"{spec}: expected header 'group_id,proportion', got {list(table.columns)}")
        ids = table["group_id"].to_numpy().astype(int)
        if config["morec_align_dist_zero_based"]:
            ids = ids + 1
        values = table["proportion"].to_numpy(dtype=float)
        where = spec
    else:
        values = np.asarray(list(spec), dtype=float)
        ids = np.arange(1, len(values) + 1)
        where = "morec_align_dist (inline list)"
    if len(set(ids.tolist())) != len(ids) or set(ids.tolist()) != set(range(1, n_groups + 1)):
        raise DatasetError(
            f"{where}: the expected alignment distribution must give one proportion for each alignment group "
            f"1..{n_groups}; it has groups {sorted(ids.tolist())}"
            + (" (0-based ids? set morec_align_dist_zero_based: true)" if 0 in ids else "")
        )
    if (values < 0).any() or abs(values.sum() - 1.0) > 1e-3:
        raise DatasetError(f"{where}: proportions must be >= 0 and sum to 1 (they sum to {values.sum():.6g})")
    dist = torch.zeros(n_groups + 1, dtype=torch.float64)
    dist[torch.as_tensor(ids)] = torch.as_tensor(values)
    return dist / (dist.sum() + 1e-10)  # UniRec's renormalisation


def group_item_by_attr(values, n_groups, faithful=True):
    """UniRec's ``group_item_by_attr``: equal-count bins of items sorted by value, descending (stable).

    ``values`` covers all items including PAD at index 0. Returns ``(group_of_item, group_mean)``,
    groups 1..G with 1 = highest values, ``group_mean[0] = 0``. ``faithful=True`` keeps quirk M6
    (items at sorted positions 1..N mod G move from bin 1 to bin 2); ``False`` = plain array_split bins.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n_groups <= 0 or int(n_groups) != n_groups:
        raise ConfigError(f"number of groups must be a positive int, got {n_groups!r}")
    n_groups = int(n_groups)
    if n_groups > n:
        raise ConfigError(f"cannot split {n} items into {n_groups} groups")
    order = np.argsort(-values, kind="stable")
    sizes = np.full(n_groups, n // n_groups)
    sizes[: n % n_groups] += 1
    sorted_groups = np.repeat(np.arange(1, n_groups + 1), sizes)
    if faithful:
        sorted_groups[1 : n % n_groups + 1] += 1
    groups = np.empty(n, dtype=np.int64)
    groups[order] = sorted_groups
    sums = np.bincount(groups, weights=values, minlength=n_groups + 1)
    counts = np.bincount(groups, minlength=n_groups + 1)
    means = np.divide(sums, counts, out=np.zeros(n_groups + 1), where=counts > 0)
    means[0] = 0.0
    return groups, means


def popularity_align_groups(item_counts, n_groups=10, faithful=True):
    """Alignment groups from popularity: ``item_counts`` over items 0..N (PAD included, as in UniRec's
    preprocessing); returns groups for items 1..N (1 = most popular)."""
    groups, _ = group_item_by_attr(item_counts, n_groups, faithful=faithful)
    return groups[1:]


def weight_groups(weights, n_groups, faithful=True):
    """Revenue groups from a numeric field (PAD at index 0 included): ``(group_of_item, mean_weight)``."""
    return group_item_by_attr(weights, n_groups, faithful=faithful)


# ---------------------------------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------------------------------
ITEM_HEADER = ["item_id:token", "price:float", "fair_group:float", "align_group:float"]


def _write_tsv(frame, header, path):
    frame = frame.copy()
    frame.columns = header
    atomic_write(path, lambda f: frame.to_csv(f, sep="\t", index=False), mode="w")


def read_morec_meta(path, objectives=("fairness", "alignment", "revenue")):
    """UniRec's ``load_morec_meta_data`` rules: ``item_id`` plus the columns the objectives need;
    a group column whose minimum over real items is 0 is shifted by +1 (0 = padding)."""
    meta = pd.read_csv(path)
    need = {"revenue": "weight", "fairness": "fair_group", "alignment": "align_group"}
    missing = [c for c in ["item_id"] + [need[o] for o in objectives] if c not in meta.columns]
    if missing:
        raise DatasetError(f"{path}: missing columns {missing} (expected item_id,weight,fair_group,align_group)")
    meta = meta[meta["item_id"] != 0].copy()
    for column in ("fair_group", "align_group"):
        if column in meta.columns and len(meta) and meta[column].min() == 0:
            meta[column] = meta[column] + 1
    return meta


def convert_morec_csv(src_dir, out_dir, dataset_name, meta_file="item_meta_morec.csv",
                      align_dist_file="expected_align_dist.csv", align_dist_zero_based=False):
    """Convert MoRec's CSV layout into RecBole atomic files under ``out_dir/dataset_name``.

    Reads ``train.csv``, ``valid.csv``, ``test.csv`` (``user_id,item_id``) and ``meta_file``; writes
    ``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter`` (use ``benchmark_filename: [train, valid,
    test]``) and ``<name>.item`` (price, fair_group, align_group). If ``align_dist_file`` exists it is
    written as ``<name>.align_dist.csv`` with 1-based group ids (M5 fix; ``align_dist_zero_based`` reads
    UniRec-convention ids). Returns the folder.
    """
    target = os.path.join(out_dir, dataset_name)
    splits = {}
    for split in ("train", "valid", "test"):
        path = os.path.join(src_dir, f"{split}.csv")
        if not os.path.isfile(path):
            raise DatasetError(f"MoRec layout: {path} not found (expected train.csv, valid.csv, test.csv)")
        frame = pd.read_csv(path)
        if list(frame.columns[:2]) != ["user_id", "item_id"]:
            raise DatasetError(f"{path}: expected header user_id,item_id, got {list(frame.columns)}")
        splits[split] = frame[["user_id", "item_id"]]
    meta = read_morec_meta(os.path.join(src_dir, meta_file))
    items = pd.concat([f["item_id"] for f in splits.values()]).unique()
    unknown = sorted(set(items.tolist()) - set(meta["item_id"].tolist()) - {0})
    if unknown:
        raise DatasetError(f"{meta_file}: items {unknown[:10]} of the interaction files have no meta row "
                           "(MoRec requires every item to be listed)")
    for split, frame in splits.items():
        # one running order per user so that sequential models read the train -> valid -> test order
        _write_tsv(frame.assign(timestamp=np.arange(len(frame)) + {"train": 0, "valid": 1, "test": 2}[split] * len(frame)),
                   ["user_id:token", "item_id:token", "timestamp:float"],
                   os.path.join(target, f"{dataset_name}.{split}.inter"))
    columns = ["item_id"] + [c for c in ("weight", "fair_group", "align_group") if c in meta.columns]
    header = {"item_id": "item_id:token", "weight": "price:float", "fair_group": "fair_group:float",
              "align_group": "align_group:float"}
    _write_tsv(meta[columns], [header[c] for c in columns], os.path.join(target, f"{dataset_name}.item"))
    dist_path = os.path.join(src_dir, align_dist_file)
    if os.path.isfile(dist_path):
        dist = pd.read_csv(dist_path)
        if align_dist_zero_based:
            dist["group_id"] = dist["group_id"] + 1
        atomic_write(os.path.join(target, f"{dataset_name}.align_dist.csv"), lambda f: dist.to_csv(f, index=False),
                     mode="w")
    return target


def prepare_ml100k(out_dir, dataset_name="ml-100k-morec", seed=2022, n_align_groups=10, min_rating=3,
                   core=10, price_range=(20.0, 100.0), faithful_bins=True, n_fair_groups=10, max_users=None):
    """Write an ml-100k variant for MoRec under ``out_dir/dataset_name``.

    Ratings >= ``min_rating``, iterated ``core``-core filter on users and items; timestamps are
    replaced by each user's interaction rank (ties broken by item id) so that RecBole's leave-one-out
    split (``LS: valid_and_test``, ``order: TO``) is deterministic. Item side information:
    ``fair_group`` = the item's first genre, the ``n_fair_groups - 1`` most frequent kept and the rest
    merged into "Miscellaneous" as in UniRec's Electronics preparation (``None`` keeps all 16; ids 1..G
    by name order), ``align_group`` = 10
    equal-count popularity bins over train + valid interactions (1 = most popular, UniRec's binning),
    ``price`` = **synthetic**, seeded U(price_range) (ml-100k has no prices: revenue numbers on this
    dataset are illustrative only). Returns the dataset folder.
    """
    import recbole

    src = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
    inter = pd.read_csv(os.path.join(src, "ml-100k.inter"), sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    item = pd.read_csv(os.path.join(src, "ml-100k.item"), sep="\t")
    item.columns = [c.split(":")[0] for c in item.columns]
    inter = inter[inter["rating"] >= min_rating].drop_duplicates(["user_id", "item_id"], keep="last")
    if max_users:  # small variant for fast tests: the first max_users user ids
        inter = inter[inter["user_id"].isin(np.sort(inter["user_id"].unique())[:max_users])]
    while True:
        users = inter["user_id"].map(inter["user_id"].value_counts())
        items = inter["item_id"].map(inter["item_id"].value_counts())
        keep = (users >= core) & (items >= core)
        if keep.all():
            break
        inter = inter[keep]
    inter = inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    inter["timestamp"] = inter.groupby("user_id").cumcount()
    last = inter.groupby("user_id")["timestamp"].transform("max")
    train_valid = inter[inter["timestamp"] < last]  # user_history = train + valid

    item_ids = np.sort(inter["item_id"].unique())
    counts = train_valid["item_id"].value_counts().reindex(item_ids, fill_value=0).to_numpy()
    align = popularity_align_groups(np.concatenate([[0.0], counts]), n_align_groups, faithful=faithful_bins)
    genre = item.set_index("item_id")["class"].reindex(item_ids).fillna("unknown").str.split(" ").str[0]
    if n_fair_groups:  # as the Electronics preparation: most frequent genres + one "Miscellaneous" group
        top = genre.value_counts(sort=True).index[: n_fair_groups - 1]
        genre = genre.where(genre.isin(top), "Miscellaneous")
    names = sorted(genre.unique())
    fair = genre.map({name: i + 1 for i, name in enumerate(names)}).to_numpy()
    rng = np.random.default_rng(seed)
    price = np.round(rng.uniform(price_range[0], price_range[1], size=len(item_ids)), 2)

    target = os.path.join(out_dir, dataset_name)
    _write_tsv(inter[["user_id", "item_id", "rating", "timestamp"]],
               ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
               os.path.join(target, f"{dataset_name}.inter"))
    meta = pd.DataFrame({"item_id": item_ids, "price": price, "fair_group": fair, "align_group": align})
    _write_tsv(meta, ITEM_HEADER, os.path.join(target, f"{dataset_name}.item"))
    atomic_write_text(
        os.path.join(target, "README.md"),
        f"# {dataset_name} (generated by recbole_ext.data.morec_data.prepare_ml100k)\n\n"
        f"ml-100k, rating >= {min_rating}, {core}-core; {inter['user_id'].nunique()} users, {len(item_ids)} items, "
        f"{len(inter)} interactions.\nfair_group = first genre ({len(names)} groups: {', '.join(names)}); "
        f"align_group = {n_align_groups} popularity bins over train+valid (1 = most popular).\n"
        f"price is SYNTHETIC: uniform {price_range} with seed {seed} (ml-100k has no prices).\n",
    )
    return target
