"""PeterRec end to end on ml-100k-derived data (cold-start item transfer): pretrain NextItNetP on the source domain,
fine-tune with patches, compare with random ranking under the sampled protocol (100 candidates).

Measured on this small
setting, PeterRec is *not* better than the frozen-backbone (head) mode or popularity ranking (see docs/peterrec.md);
this test checks that the two-stage flow learns a real signal."""

import torch

from recbole_ext.data import peterrec_data as pdata
from recbole_ext.quick_start import run_recbole

torch.set_num_threads(1)


def test_coldrec_two_stage_transfer_beats_random_ranking(run_dir, quiet_config, tmp_path):
    data = str(tmp_path / "data")
    src, tgt = pdata.write_coldrec_task(data, max_source_len=20)
    pre = run_recbole("NextItNetP", src, config_dict=dict(
        quiet_config, data_path=data, embedding_size=32, dilations=[1, 4, 1, 4], MAX_ITEM_LIST_LENGTH=20,
        epochs=3, train_batch_size=64, eval_batch_size=4096, metrics=["Hit"], topk=[10], valid_metric="Hit@10",
        load_col={"inter": ["user_id", "item_id", "rating", "timestamp"]}))
    fine = dict(quiet_config, data_path=data, pretrained_model_file=pre["checkpoint"], epochs=8, stopping_step=3,
                train_batch_size=64, eval_batch_size=512, peterrec_eval="sampled", metrics=["Hit", "MRR"],
                topk=[5], valid_metric="MRR@5")
    patch = run_recbole("PeterRec", tgt, config_dict=dict(fine, peterrec_mode="patch", peterrec_insertion="parallel"))
    got = patch["test_result"]
    random_hit = 5 / 100
    random_mrr = sum(1 / r for r in range(1, 6)) / 100
    assert got["hit@5"] > 3 * random_hit, got
    assert got["mrr@5"] > 3 * random_mrr, got
    assert patch["best_valid_result"]["mrr@5"] > 3 * random_mrr
