"""CaliTune: fine-tuning a trained recommender for calibrated recommendations.

Lesota, Bajko, Walder, Wenzel, Tommasel, Schedl: "Fine-tuning for Inference-efficient Calibrated
Recommendations", RecSys 2025 (LBR). Spec: ``shared/specs/calitune.md``.

``trainer: CaliTune`` with ``model: BPR | DMF | MultiVAE`` and ``pretrained_model_file`` (a backbone
checkpoint written by ``run_recbole.py``). Per mini-batch of users the loss is

    L = (1 − λ) · LA_u + λ · KL(P_u ‖ Q_u)

* LA_u — listwise KL between softmax(train labels) and softmax(scores) over the user's top-m
  candidates C_u (MultiVAE: its own ELBO instead);
* Q_u — score-weighted popularity-group shares over C_u, weights = min–max normalised scores;
* C_u — top-m items by the current scores (only PAD excluded), recomputed after every epoch.

After every epoch one scoring pass over all users yields the next candidates, validation NDCG@k
(train items masked) and JSD@k (train and valid items masked). A snapshot is saved whenever NDCG, JSD
or tradeoff = sqrt(NDCG/NDCG_0 · JSD_0/JSD) beats its best so far (quirk C2); the model evaluated after
``fit`` is the last snapshot (``calitune_select: last``), the best by ``ndcg`` / ``jsd`` / ``tradeoff``, or
(``valid_jsd_target``) the best valid NDCG among epochs with valid JSD ≤ ``calitune_valid_jsd_target``.

Modules: :mod:`.losses` (pure loss functions), :mod:`.backbones` (one adapter per backbone),
:mod:`.trainer`. Options and their defaults: ``properties/trainer/CaliTune.yaml``.
"""

from recbole_ext.trainer.calitune.losses import calibration_loss, calitune_loss, group_distribution, listwise_loss
from recbole_ext.trainer.calitune.trainer import CaliTuneTrainer

__all__ = ["CaliTuneTrainer", "calibration_loss", "calitune_loss", "group_distribution", "listwise_loss"]
