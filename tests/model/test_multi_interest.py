"""Unit tests of the multi-interest models (MIND / ComiRec / REMI) and the BaM scheme (issue 3)."""

import math

import pytest
import torch
import torch.nn.functional as F

import recbole_ext  # noqa: F401
from recbole_ext import Config, create_dataset, get_model
from recbole_ext.errors import ConfigError
from recbole_ext.model.sequential_recommender.mind import squash
from recbole_ext.model.sequential_recommender.multi_interest import (
    multi_interest_scores,
    reweight_log_weights,
    routing_regularization,
    sampled_softmax_loss,
)

torch.set_num_threads(1)

SMALL = {
    "show_progress": False,
    "state": "WARNING",
    "MAX_ITEM_LIST_LENGTH": 12,
    "embedding_size": 16,
    "sampled_n": 64,
    "linear_size": 8,
}


@pytest.fixture(scope="module")
def dataset():
    config = Config("ComiRec", "ml-100k", config_dict=SMALL)
    return create_dataset(config)


def build(model, dataset, **overrides):
    config = Config(model, "ml-100k", config_dict={**SMALL, **overrides})
    torch.manual_seed(0)
    return get_model(model)(config, dataset), config


def batch(model, rows):
    """An Interaction-like dict of right-padded sequences (``rows``: lists of item ids)."""
    length = model.max_seq_length
    seq = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        seq[i, : len(r)] = torch.tensor(r)
    return {
        model.ITEM_SEQ: seq,
        model.ITEM_SEQ_LEN: torch.tensor([len(r) for r in rows]),
        model.ITEM_ID: torch.tensor([r[-1] % 50 + 100 for r in rows]),
    }


# ---------------------------------------------------------------------------------------------- config
def test_aliases_resolve_with_bam_defaults(dataset):
    model, config = build("BaM_REMI", dataset)
    assert type(model).__name__ == "REMI"
    assert config["selection"] == "p" and config["multi_loss"] is True
    assert config["rbeta"] == 0.01 and config["rlambda"] == 100.0
    assert model.effective_rlambda == 0.0  # RR off for BaM (rlambda forced to 0 unless hard)
    model, config = build("BaM_MIND", dataset, selection="l", T=0.5)
    assert type(model).__name__ == "MIND" and model.selection == "l" and model.T == 0.5
    model, _ = build("REMI", dataset)
    assert model.selection == "hard" and model.effective_rlambda == 100.0 and not model.multi_loss
    model, _ = build("BaM_ComiRec", dataset)
    assert type(model).__name__ == "ComiRec" and model.rbeta == 0.0 and model.selection == "p"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"T": 0}, "T must be"),
        ({"T": -1.0}, "T must be"),
        ({"selection": "gumbel"}, "selection must be one of"),
        ({"selection": "l", "linear_size": 16}, "linear_size"),
        ({"selection": "l", "linear_size": 32}, "linear_size"),
        ({"interest_num": 0}, "interest_num"),
        ({"sampled_n": 5000}, "sampled_n"),
        ({"sampled_n": 1683, "neg_exclude_pad": True}, "sampled_n"),
    ],
)
@pytest.mark.parametrize("name", ["MIND", "ComiRec", "BaM_REMI"])
def test_bad_input_raises_at_construction(dataset, name, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build(name, dataset, **overrides)


# ---------------------------------------------------------------------------------------------- interests
@pytest.mark.parametrize("name", ["ComiRec", "REMI", "MIND"])
def test_padding_never_changes_interests(dataset, name):
    model, _ = build(name, dataset, routing_init="fixed_eval")
    model.eval()
    short, long_ = [5, 9, 33, 2], [7, 8, 1, 44, 55, 66, 77, 88, 99, 10, 11]
    inter = batch(model, [short, long_])
    with torch.no_grad():
        both = model.forward(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])
        alone = model.forward(inter[model.ITEM_SEQ][:1], inter[model.ITEM_SEQ_LEN][:1])
        assert both.shape == (2, model.interest_num, model.embedding_size)
        torch.testing.assert_close(both[0], alone[0])  # batch composition / others' lengths
        model.item_embedding.weight[0] += 10.0  # the (non-zero, quirk Q1) PAD row never enters
        moved = model.forward(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])
        torch.testing.assert_close(moved, both)
        if name != "MIND":  # attention models: also independent of how much padding follows
            trimmed = model.forward(inter[model.ITEM_SEQ][:1, : len(short)], inter[model.ITEM_SEQ_LEN][:1])
            torch.testing.assert_close(trimmed[0], both[0])


def test_comirec_packed_path_equals_dense_path(dataset):
    model, _ = build("REMI", dataset)
    inter = batch(model, [[3, 4], [9, 8, 7, 6, 5, 4, 3, 2, 1, 10, 11, 12], [20]])  # < 75% real: packed path
    seq, lens = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]
    packed, a_packed = model.extract_interests(seq, lens)
    full = torch.cat([seq, torch.arange(1, 13).repeat(6, 1)])  # mostly real positions: dense path
    dense, a_dense = model.extract_interests(full, torch.full((9,), 12))
    torch.testing.assert_close(packed, dense[:3])
    torch.testing.assert_close(a_packed, a_dense[:3])


def test_comirec_attention_by_hand(dataset):
    model, _ = build("ComiRec", dataset)
    inter = batch(model, [[3, 4, 5]])
    seq = inter[model.ITEM_SEQ]
    interests, attention = model.extract_interests(seq, inter[model.ITEM_SEQ_LEN])
    emb = model.item_embedding.weight[[3, 4, 5]]
    h = torch.tanh((emb + model.position_embedding[0, :3]) @ model.linear1[0].weight.t())
    a = torch.softmax((h @ model.linear2.weight.t()).t(), dim=1)  # [K, 3]
    torch.testing.assert_close(attention[0, :, :3], a)
    assert float(attention[0, :, 3:].detach().abs().max()) == 0.0
    torch.testing.assert_close(interests[0], a @ emb)


def test_mind_routing_by_hand_and_quirk_q2(dataset):
    model, _ = build("MIND", dataset)
    model.eval()
    inter = batch(model, [[3, 4, 5]])
    seq, lens = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]
    torch.manual_seed(7)
    got = model.forward(seq, lens)
    torch.manual_seed(7)
    b = torch.randn(1, model.interest_num, model.max_seq_length)
    u = model.bilinear(model.item_embedding(seq) * (seq != 0).unsqueeze(-1).float())[0]  # [L, d]
    mask = (seq[0] != 0).float()
    for it in range(3):
        w = torch.softmax(b[0], dim=-1) * mask
        z = squash(w @ u)
        if it < 2:
            b = b + (z @ u.t()).unsqueeze(0)
    torch.testing.assert_close(got[0], z)
    # faithful default: fresh routing logits at every forward, evaluation included
    assert not torch.allclose(model.forward(seq, lens), model.forward(seq, lens))
    z = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(squash(z), z / 5 * 25 / 26)


# ---------------------------------------------------------------------------------------------- losses
def test_sampled_softmax_equals_cross_entropy():
    torch.manual_seed(1)
    pos, neg = torch.randn(8), torch.randn(8, 30) * 3
    expected = F.cross_entropy(torch.cat([pos[:, None], neg], 1), torch.zeros(8, dtype=torch.long), reduction="none")
    torch.testing.assert_close(sampled_softmax_loss(pos, neg), expected)


def test_model_loss_is_cross_entropy_over_pos_and_negatives(dataset, monkeypatch):
    model, _ = build("ComiRec", dataset)  # hard selection, single loss, rbeta 0
    inter = batch(model, [[3, 4, 5], [9, 8, 7, 6, 5, 4]])
    negs = torch.randint(0, model.n_items, (2, model.sampled_n))
    monkeypatch.setattr(model, "sample_negatives", lambda b, device: negs)
    loss = model.calculate_loss(inter)
    interests = model.forward(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])
    emb = model.item_embedding.weight
    pos = inter[model.ITEM_ID]
    k = (interests @ emb[pos].unsqueeze(-1)).squeeze(-1).argmax(1)
    user = interests[torch.arange(2), k]
    logits = torch.cat([(user * emb[pos]).sum(-1, keepdim=True), (user.unsqueeze(1) * emb[negs]).sum(-1)], 1)
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.zeros(2, dtype=torch.long)))


def test_shared_negatives_loss_is_cross_entropy(dataset, monkeypatch):
    model, _ = build("ComiRec", dataset, selection="p", multi_loss=True)  # default: batch-shared negatives
    inter = batch(model, [[3, 4, 5], [9, 8, 7, 6, 5, 4], [20, 21]])
    negs = torch.randperm(model.n_items)[: model.sampled_n]
    torch.manual_seed(11)
    monkeypatch.setattr(model, "sample_negatives", lambda b, device: negs)
    loss = model.calculate_loss(inter)
    torch.manual_seed(11)
    interests = model.forward(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])
    emb, pos = model.item_embedding.weight, inter[model.ITEM_ID]
    k, _ = model.select_interest(interests, emb[pos])  # same seed -> same sampled interests
    cols = torch.cat([pos[:, None], negs.expand(3, -1)], 1)
    per_interest = (interests @ emb.t()).gather(2, cols.unsqueeze(1).expand(-1, 4, -1))  # [B, K, 1+n]
    zero = torch.zeros(3, dtype=torch.long)
    expected = F.cross_entropy(per_interest[torch.arange(3), k], zero) + F.cross_entropy(
        torch.logsumexp(per_interest, 1), zero)
    torch.testing.assert_close(loss, expected)


def test_multi_interest_score_is_logsumexp():
    torch.manual_seed(2)
    interests, items = torch.randn(3, 4, 5), torch.randn(6, 5)
    expected = torch.tensor(
        [[math.log(sum(math.exp(float(interests[b, k] @ items[i])) for k in range(4))) for i in range(6)] for b in range(3)]
    )
    torch.testing.assert_close(multi_interest_scores(interests, items, shared=True), expected)
    per_row = items.unsqueeze(0).expand(3, -1, -1)
    torch.testing.assert_close(multi_interest_scores(interests, per_row), expected)
    torch.testing.assert_close(multi_interest_scores(interests, items[:3]), expected.diagonal())


def test_multi_loss_adds_lm_on_the_same_negatives(dataset, monkeypatch):
    model, _ = build("ComiRec", dataset, multi_loss=True)
    inter = batch(model, [[3, 4, 5], [9, 8, 7, 6]])
    negs = torch.randint(0, model.n_items, (2, model.sampled_n))
    monkeypatch.setattr(model, "sample_negatives", lambda b, device: negs)
    total = model.calculate_loss(inter)
    model.multi_loss = False
    single = model.calculate_loss(inter)
    interests = model.forward(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])
    emb = model.item_embedding.weight
    scores = torch.logsumexp(interests @ emb.t(), dim=1)  # [B, N] full catalogue (what the original does)
    cols = torch.cat([inter[model.ITEM_ID][:, None], negs], 1)
    lm = F.cross_entropy(scores.gather(1, cols), torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(total, single + lm)


def test_remi_reweighting_averages_to_one_and_matches_formula():
    torch.manual_seed(3)
    pos, neg, beta = torch.randn(4), torch.randn(4, 50) * 5, 0.7
    w = reweight_log_weights(pos, neg, beta).exp()
    torch.testing.assert_close(w.mean(1), torch.ones(4))
    x = torch.cat([pos[:, None], neg], 1)
    x = x - x.max(1, keepdim=True).values
    raw = torch.exp(beta * x[:, 1:] - (beta * x[:, 1:]).max(1, keepdim=True).values)
    w_hand = raw / raw.mean(1, keepdim=True)
    torch.testing.assert_close(w, w_hand)
    loss_hand = -x[:, 0] + torch.log(torch.exp(x[:, 0]) + (w_hand * torch.exp(x[:, 1:])).sum(1))
    torch.testing.assert_close(sampled_softmax_loss(pos, neg, beta), loss_hand)
    # harder negatives (higher logits) weigh more
    assert bool((w.gather(1, neg.argmax(1, keepdim=True)) > 1).all())


def test_routing_regularisation_by_hand():
    torch.manual_seed(4)
    a = torch.softmax(torch.randn(3, 4, 6), -1)
    expected = 0.0
    for b in range(3):
        c = a[b] - a[b].mean(1, keepdim=True)
        expected += float((torch.diagonal(c @ c.t() / 16) ** 2).sum())  # summed over the batch (Q5)
    assert float(routing_regularization(a, 16)) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------------------------- selection
@pytest.mark.parametrize("selection", ["p", "l"])
def test_huge_T_reproduces_hard_selection(dataset, selection):
    model, _ = build("ComiRec", dataset, selection=selection, T=1e9)
    torch.manual_seed(5)
    interests, target = torch.randn(512, 4, 16), torch.randn(512, 16)
    c = model.selection_logits(interests, target)
    index, _ = model.select_interest(interests, target)
    assert torch.equal(index, c.argmax(1))
    model.T = 1.0  # soft: sampled indices differ from the argmax for a good share of rows
    soft, _ = model.select_interest(interests, target)
    assert float((soft != c.argmax(1)).float().mean()) > 0.1


def test_bam_l_projections_untrained_by_default_straight_through_trains_them(dataset):
    inter = None
    for l_grad, trained in (("none", False), ("straight_through", True)):
        model, _ = build("ComiRec", dataset, selection="l", l_grad=l_grad)
        inter = inter or batch(model, [[3, 4, 5], [9, 8, 7, 6], [1, 2]])
        model.calculate_loss(inter).backward()
        grad = model.l1.weight.grad
        assert (grad is not None and float(grad.abs().sum()) > 0) == trained
        assert float(model.l1.bias.abs().sum()) == 0.0  # zero-initialised biases (original init)


def test_routing_share_counts_selected_and_argmax(dataset):
    model, _ = build("ComiRec", dataset, selection="p")
    inter = batch(model, [[3, 4, 5], [9, 8, 7, 6], [1, 2]])
    model.calculate_loss(inter)
    model.calculate_loss(inter)
    selected, argmax = model.pop_routing_share()
    assert len(selected) == 4 and sum(selected) == pytest.approx(1.0) and sum(argmax) == pytest.approx(1.0)
    assert float(model.route_selected.sum()) == 0.0  # reset


# ---------------------------------------------------------------------------------------------- negatives
def test_negatives_without_replacement_for_the_whole_batch(dataset):
    model, _ = build("ComiRec", dataset, sampled_n=500, neg_sample_mode="row")
    negs = model.sample_negatives(64, "cpu")
    assert negs.shape == (64, 500) and int(negs.min()) >= 0 and int(negs.max()) < model.n_items
    assert bool((negs.sort(1).values.diff(dim=1) > 0).all())  # distinct within each row
    assert not torch.equal(negs[0].sort().values, negs[1].sort().values)  # independent rows
    model.neg_exclude_pad = True
    assert int(model.sample_negatives(64, "cpu").min()) >= 1
    model.neg_sample_mode = "batch"
    shared = model.sample_negatives(64, "cpu")
    assert shared.shape == (500,) and shared.unique().numel() == 500


# ---------------------------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("name", ["ComiRec", "MIND"])
def test_full_sort_is_max_over_interests_and_masks_window(dataset, name):
    model, _ = build(name, dataset, routing_init="fixed_eval")
    model.eval()
    inter = batch(model, [[3, 4, 5], [9, 8, 7, 6, 5, 4]])
    with torch.no_grad():
        interests = model.forward(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])
        expected = (interests @ model.item_embedding.weight.t()).max(1).values
        model.history_mask = "none"
        torch.testing.assert_close(model.full_sort_predict(inter), expected)
        torch.testing.assert_close(model.predict(inter), expected.gather(1, inter[model.ITEM_ID][:, None])[:, 0])
        model.history_mask = "window_zero"  # faithful quirk Q6: window items (and PAD) score 0
        zero = model.full_sort_predict(inter)
        assert float(zero[0, [0, 3, 4, 5]].abs().max()) == 0.0 and float(zero[1, 9]) == 0.0
        torch.testing.assert_close(zero[0, 6:], expected[0, 6:])
        model.history_mask = "window_neg_inf"
        assert bool(torch.isinf(model.full_sort_predict(inter)[1, [4, 5, 6, 7, 8, 9]]).all())


def random_eval_batch(model, n_rows, excluded_per_row, seed):
    """Histories of random lengths and ``excluded_per_row`` random (row, item) exclusions per row."""
    gen = torch.Generator().manual_seed(seed)
    rows = [torch.randint(1, model.n_items, (int(n),), generator=gen).tolist()
            for n in torch.randint(1, model.max_seq_length + 1, (n_rows,), generator=gen)]
    items = torch.randint(1, model.n_items, (n_rows * excluded_per_row,), generator=gen)
    return batch(model, rows), (torch.arange(n_rows).repeat_interleave(excluded_per_row), items)


@pytest.mark.parametrize("name", ["ComiRec", "MIND", "REMI"])
@pytest.mark.parametrize("history_mask", ["window_zero", "window_neg_inf", "none"])
def test_bf16_rescore_top_k_equals_exact_fp32(dataset, name, history_mask):
    """eval_scoring bf16_rescore: same top-k lists as the exact fp32 path (PAD and the trainer's
    exclusions applied to both), certified rows plus the per-row fp32 fallback."""
    model, _ = build(name, dataset, routing_init="fixed_eval", history_mask=history_mask, topk=[5, 10])
    model.eval()
    inter, exclude = random_eval_batch(model, 64, 3, seed=1)

    def top(scoring, margin):
        model.eval_scoring, model.rescore_margin, model.eval_exclude = scoring, margin, exclude
        with torch.no_grad():
            scores = model.full_sort_predict(inter)
        model.eval_exclude = None
        scores[:, 0] = -float("inf")
        scores[exclude] = -float("inf")
        values, index = torch.topk(scores, 10, dim=1)
        return values, index

    exact_values, exact_index = top("fp32", 0)
    for margin in (30, 0):  # margin 0: many rows cannot be certified and take the fp32 fallback
        model.rescore_stats = {"rows": 0, "fallback_rows": 0}
        values, index = top("bf16_rescore", margin)
        assert torch.equal(index, exact_index)
        torch.testing.assert_close(values, exact_values)
        assert model.rescore_stats["rows"] == 64
    assert model.rescore_stats["fallback_rows"] > 0  # the fallback path was exercised


@pytest.mark.parametrize("name", ["ComiRec", "MIND", "REMI"])
@pytest.mark.parametrize("history_mask", ["window_zero", "window_neg_inf"])
def test_full_sort_topk_equals_topk_of_masked_scores(dataset, name, history_mask):
    """full_sort_topk (users in blocks, no [B, N] matrix) = torch.topk over full_sort_predict with PAD and the
    trainer's exclusions at -inf, for both scorers; blocks of 7 rows and margin 0 exercise the row split and
    the bf16 fallback."""
    model, _ = build(name, dataset, routing_init="fixed_eval", history_mask=history_mask, topk=[5, 10])
    model.eval()
    inter, exclude = random_eval_batch(model, 40, 4, seed=2)
    with torch.no_grad():
        scores = model.full_sort_predict(inter)
    scores[:, 0] = -float("inf")
    scores[exclude] = -float("inf")
    expected = torch.topk(scores, 10, dim=1).indices
    model.eval_block_size = 7
    for scoring, margin in (("fp32", 44), ("bf16_rescore", 44), ("bf16_rescore", 0)):
        model.eval_scoring, model.rescore_margin = scoring, margin
        model.rescore_stats = {"rows": 0, "fallback_rows": 0}
        assert torch.equal(model.full_sort_topk(inter, 10, exclude), expected), (scoring, margin)
    assert model.rescore_stats["fallback_rows"] > 0


def test_eval_scoring_is_checked(dataset):
    with pytest.raises(ConfigError, match="eval_scoring"):
        build("ComiRec", dataset, eval_scoring="int8")


# ---------------------------------------------------------------------------------------------- sampler
def test_train_sampler_is_uniform_over_users_then_positions():
    from recbole_ext.data.utils import data_preparation

    config = Config("BaM_REMI", "ml-100k", config_dict={**SMALL, "iters_per_epoch": 40, "train_batch_size": 512})
    train, _, _ = data_preparation(config, create_dataset(config))
    assert len(train) == 40
    users = torch.cat([inter[config["USER_ID_FIELD"]] for inter in train])
    assert users.numel() == 40 * 512
    rows = torch.bincount(train._dataset.inter_feat[config["USER_ID_FIELD"]])
    drawn = torch.bincount(users, minlength=rows.numel()).double()
    active = rows > 0
    heavy = active & (rows >= rows[active].double().quantile(0.9))
    light = active & (rows <= rows[active].double().quantile(0.5))
    # uniform over users: heavy and light users are drawn about equally often (interaction-uniform: ~10x)
    ratio = float(drawn[heavy].mean() / drawn[light].mean())
    assert 0.8 < ratio < 1.25
    assert float(rows[heavy].double().mean() / rows[light].double().mean()) > 5
    # the other mode is RecBole's loader: every row once per epoch
    config = Config("BaM_REMI", "ml-100k", config_dict={**SMALL, "train_sampler": "interaction", "train_batch_size": 512})
    train, _, _ = data_preparation(config, create_dataset(config))
    assert sum(len(inter) for inter in train) == len(train._dataset)
