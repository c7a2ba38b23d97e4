"""Importing the original BaM's checkpoints (``bam_converter --checkpoint``) on a synthetic original-format
state dict: the imported model scores every item exactly as the original network computed from the same
weights, and RecBole's evaluation of it (``--resume_checkpoint ... --epochs=0``) gives the metrics of those
scores."""

import math
import os

import numpy as np
import pytest
import torch

from recbole_ext.data.bam_converter import convert, import_checkpoint, main
from recbole_ext.errors import CheckpointError
from recbole_ext.quick_start import load_data_and_model, run_recbole
from tests.helpers import REPO

PROPS = os.path.join(REPO, "properties", "bam_ml-100k.yaml")
N_ITEMS, D, K, L = 30, 8, 3, 6  # original ids 1..30; hidden 8; 3 interests; seq_len 6


def sequences(seed=0):
    """user (1-based) -> chronological items without repeats; every item id 1..N_ITEMS occurs."""
    rng = np.random.default_rng(seed)
    seqs = {u: [int(i) for i in rng.choice(np.arange(1, N_ITEMS + 1), size=rng.integers(5, 12), replace=False)]
            for u in range(1, 15)}
    seqs[1] = [int(i) for i in rng.permutation(np.arange(1, N_ITEMS + 1))[:12]]
    missing = sorted(set(range(1, N_ITEMS + 1)) - {i for s in seqs.values() for i in s})
    seqs[15] = missing + [i for i in (1, 2, 3, 4, 5) if i not in missing][: max(0, 5 - len(missing))]
    return seqs


def write_data(tmp_path, seqs):
    """BaM's file format, users interleaved (RecBole's internal item ids then differ from the original's)."""
    lines, step = [], 0
    while any(step < len(s) for s in seqs.values()):
        lines += [f"{u} {s[step]}" for u, s in sorted(seqs.items(), reverse=True) if step < len(s)]
        step += 1
    src = tmp_path / "tiny"
    src.write_text("\n".join(lines) + "\n")
    return convert(str(src), str(tmp_path / "data"), "tiny")["data_path"]


def original_state(bam_l=False, seed=1):
    """A state dict with the original's keys and shapes (ComiRec-SA / REMI; BaM_l adds l1 / l2)."""
    g = torch.Generator().manual_seed(seed)
    state = {
        "embeddings.weight": torch.randn(N_ITEMS + 1, D, generator=g),
        "position_embedding": torch.randn(1, L, D, generator=g),
        "linear1.0.weight": torch.randn(4 * D, D, generator=g) * 0.3,
        "linear2.weight": torch.randn(K, 4 * D, generator=g) * 0.3,
        "sample_loss.logprob_noise": torch.full((N_ITEMS + 1,), -math.log(N_ITEMS + 1)),
    }
    if bam_l:
        state.update({"l1.weight": torch.randn(4, D, generator=g), "l1.bias": torch.zeros(4),
                      "l2.weight": torch.randn(4, D, generator=g), "l2.bias": torch.zeros(4)})
    return state


def original_scores(state, history):
    """The original's evaluation scores (spec §3b, §7) for one user, over all N_ITEMS + 1 rows:
    left-aligned history, tanh attention over E + P, max over interests, window items (and PAD if padded) = 0."""
    emb = state["embeddings.weight"]
    items = history + [0] * (L - len(history))
    mask = torch.tensor([1.0] * len(history) + [0.0] * (L - len(history)))
    e = emb[torch.tensor(items)] * mask[:, None]  # [L, d]
    hidden = torch.tanh((e + state["position_embedding"][0]) @ state["linear1.0.weight"].t())
    logits = (hidden @ state["linear2.weight"].t()).t()  # [K, L]
    logits = torch.where(mask.bool()[None, :], logits, torch.tensor(-(2.0**32) + 1))
    interests = torch.softmax(logits, dim=-1) @ e  # [K, d]
    score = (interests @ emb.t()).max(dim=0).values
    score[torch.tensor(items)] = 0.0
    return score


def expected_metrics(state, seqs, k):
    """Recall@k / NDCG@k of the original's scores with the PAD row left out (RecBole sets it to -inf)."""
    hits, gains = [], []
    for seq in seqs.values():
        score = original_scores(state, seq[:-1][-L:])[1:]
        rank = int((score > score[seq[-1] - 1]).sum())
        hits.append(rank < k)
        gains.append(1.0 / math.log2(rank + 2) if rank < k else 0.0)
    return float(np.mean(hits)), float(np.mean(gains))


def sizes(quiet_config, data_path, **extra):
    return {**quiet_config, "data_path": data_path, "sampled_n": 8, **extra}


@pytest.mark.parametrize("bam_l", [False, True])
def test_imported_checkpoint_scores_like_the_original(tmp_path, run_dir, quiet_config, bam_l):
    seqs = sequences()
    data_path = write_data(tmp_path, seqs)
    state = original_state(bam_l)
    source = tmp_path / "model.pt"
    torch.save(state, source)
    out = str(tmp_path / "imported.pth")
    import_checkpoint(str(source), "tiny", out, "BaM_REMI", data_path, [PROPS], sizes(quiet_config, data_path))

    config, model, dataset, _, _, test_data = load_data_and_model(out)
    assert config["MAX_ITEM_LIST_LENGTH"] == L and config["interest_num"] == K
    assert config["selection"] == ("l" if bam_l else "p")
    item_ids = dataset.field2id_token["item_id"][1:].astype(np.int64)
    assert not np.array_equal(item_ids, np.arange(1, N_ITEMS + 1))  # the remapping is not the identity
    model.eval()
    checked = 0
    with torch.no_grad():
        for interaction, _, _, _ in test_data:
            ours = model.full_sort_predict(interaction)[:, 1:]  # PAD column aside
            users = dataset.field2id_token["user_id"][interaction["user_id"].numpy()].astype(np.int64)
            for row, user in enumerate(users):
                direct = original_scores(state, seqs[user][:-1][-L:])[torch.from_numpy(item_ids)]
                torch.testing.assert_close(ours[row], direct, rtol=1e-5, atol=1e-5)
                top_ours = item_ids[ours[row].topk(10).indices.numpy()]
                top_direct = item_ids[direct.topk(10).indices.numpy()]
                assert top_ours.tolist() == top_direct.tolist()
                checked += 1
    assert checked == len(seqs)

    # RecBole's evaluation of the imported weights: --resume_checkpoint=... --epochs=0
    result = run_recbole("BaM_REMI", "tiny", config_file_list=[PROPS], config_dict=sizes(
        quiet_config, data_path, MAX_ITEM_LIST_LENGTH=L, embedding_size=D, interest_num=K,
        **({"selection": "l", "linear_size": 4} if bam_l else {}), resume_checkpoint=out, epochs=0))
    for k in (10, 20):
        recall, ndcg = expected_metrics(state, seqs, k)
        assert result["test_result"][f"recall@{k}"] == pytest.approx(recall, abs=1e-4)
        assert result["test_result"][f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-4)


def test_cli_checkpoint_mode(tmp_path, run_dir, quiet_config, capsys):
    data_path = write_data(tmp_path, sequences())
    source = tmp_path / "model.pt"
    torch.save(original_state(), source)
    out = tmp_path / "cli.pth"
    small = tmp_path / "small.yaml"
    small.write_text("sampled_n: 8\nstate: WARNING\n")  # a 30-item catalogue
    main(["--checkpoint", str(source), "--dataset", "tiny", "--data_path", data_path, "--config_files",
          f"{PROPS} {small}", "--out", str(out)])
    assert out.is_file() and "--resume_checkpoint" in capsys.readouterr().out
    saved = torch.load(out, weights_only=True)
    assert saved["meta"]["split_fingerprint"]["test"]["rows"] == len(sequences())


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("linear2.weight"), "'linear2.weight'"),
    (lambda s: s.update({"position_embedding": torch.zeros(1, L, D + 1)}), "'position_embedding'"),
    (lambda s: s.update({"linear1.0.weight": torch.zeros(4 * D, D + 2)}), "'linear1.0.weight'"),
    (lambda s: s.update({"sample_loss.logprob_noise": torch.zeros(N_ITEMS)}), "'sample_loss.logprob_noise'"),
    (lambda s: s.update({"capsule.weight": torch.zeros(2)}), "'capsule.weight'"),
    (lambda s: s.update({"l1.weight": torch.zeros(4, D)}), "'l1.bias'"),
    (lambda s: s.update({"embeddings.weight": torch.zeros(N_ITEMS - 5, D),
                         "sample_loss.logprob_noise": torch.zeros(N_ITEMS - 5)}), "no row in 'embeddings.weight'"),
])
def test_bad_checkpoints_refused_by_key(tmp_path, run_dir, quiet_config, change, message):
    data_path = write_data(tmp_path, sequences())
    state = original_state()
    change(state)
    source = tmp_path / "model.pt"
    torch.save(state, source)
    with pytest.raises(CheckpointError, match=message):
        import_checkpoint(str(source), "tiny", str(tmp_path / "x.pth"), "BaM_REMI", data_path, [PROPS],
                          sizes(quiet_config, data_path))
    assert not (tmp_path / "x.pth").exists()


def test_pickled_objects_are_not_loaded(tmp_path, quiet_config):
    source = tmp_path / "model.pt"
    torch.save({"embeddings.weight": torch.zeros(2, 2), "extra": object()}, source)
    with pytest.raises(CheckpointError, match="weights-only"):
        import_checkpoint(str(source), "tiny", str(tmp_path / "x.pth"))
