"""MoRec (``trainer: MoRec``): multi-objective post-training of a trained accuracy model.

MoRec — "A Data-Centric Multi-Objective Learning Framework for Responsible Recommendation Systems"
(arXiv 2310.13260, WWW 2024; original code microsoft/UniRec ``unirec/facility/morec``).

:class:`MoRecTrainer` (:mod:`.trainer`) starts from the checkpoint in ``pretrained_model_file`` (fresh
optimiser) and, for every epoch:

1. reads validation signals with the current model (:mod:`.signals`) — fairness: per fair group the
   summed per-row training loss on validation rows (train mode, uniform negatives) divided by |V| (quirk
   M1) or, with ``morec_fair_metric: hit``, hit@10 per group; alignment: share of each alignment group
   among the top-``morec_align_topk`` items of every validation user vs. p*; revenue: no signal (its
   weights stay at the group-mean prices);
2. moves each objective's group sampling weights one signed-SGD step (:mod:`.sampler`);
3. trains S = ceil(|T| / B) steps on (|O| + 1)·B-row batches (one stratified sub-batch per objective,
   then an accuracy sub-batch), combining the per-objective losses (:mod:`.losses`) with the coordinator
   (:mod:`.controller`, PI controller or static weights).

Every epoch runs (UniRec's ``early_stop -1``; ``morec_early_stop: true`` = RecBole's early stopping) and the
model after the last epoch is tested (``morec_select: last``). Options: :mod:`.options` (defaults in
``properties/trainer/MoRec.yaml``); trajectory plot: :mod:`.plot`.
Supported: any general or sequential model whose ``predict`` (bpr / bce) or ``full_sort_predict`` (ce)
is differentiable for training rows (MF-style BPR, LightGCN, NeuMF, SASRec, GRU4Rec, ...).
"""

from recbole_ext.trainer.morec.trainer import MoRecTrainer

__all__ = ["MoRecTrainer"]
