r"""GRec encoder: the non-causal dilated-CNN backbone of PeterRec, pretrained by masked-item prediction.

Reference:
    Yuan et al., "Future Data Helps Training: Modeling Future Contexts for Session-based Recommendation", WWW 2020
    (GRec); Yuan et al., PeterRec, SIGIR 2020, code fajieyuan/SIGIR2020_peterrec ``generator_peterrec_non.py`` /
    ``GRec_TF_Pretrain.py``.

Same residual block as NextItNet with SAME-padded (non-causal) convolutions. Training row = [left-padded history...,
target]; per row ``min(30, max(1, round(0.3·L)))`` positions are drawn uniformly (pad positions included, quirk P14);
each becomes ``[MASK]`` (the ``<UNK>`` row) with probability 0.8, stays with 0.1, becomes a random vocabulary id with
0.1; full-softmax cross-entropy at the chosen positions. Prediction: the next item is put as ``[MASK]`` at the end.
"""

import torch
import torch.nn.functional as F

from recbole_ext.errors import ConfigError
from recbole_ext.model.sequential_recommender.peterrec_backbone import DilatedPretrainModel, left_align


class GRec(DilatedPretrainModel):
    r"""Non-causal GRec encoder pretrained with the masked-item objective (GRec WWW 2020; PeterRec SIGIR 2020)."""

    causal = False

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.mask_ratio = float(config["mask_ratio"])
        self.max_predictions = int(config["max_predictions"])
        if not 0.0 < self.mask_ratio <= 1.0:
            raise ConfigError(f"mask_ratio {self.mask_ratio}: must be in (0, 1] (original 0.3)")

    def _with_mask_at_end(self, interaction):
        seq = left_align(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        mask = torch.full_like(seq[:, :1], self.unk_id)
        return torch.cat([seq, mask], dim=1)

    def last_hidden(self, interaction):
        return self.encoder(self._with_mask_at_end(interaction))[:, -1]

    def calculate_loss(self, interaction):
        row = torch.cat(
            [left_align(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]), interaction[self.POS_ITEM_ID].unsqueeze(1)],
            dim=1,
        )
        batch, length = row.shape
        n_pred = min(self.max_predictions, max(1, int(round(self.mask_ratio * length))))
        positions = torch.rand(batch, length, device=row.device).argsort(dim=1)[:, :n_pred]
        labels = row.gather(1, positions)
        u = torch.rand(batch, n_pred, device=row.device)
        random_ids = torch.randint(0, self.vocab_size, (batch, n_pred), device=row.device)
        replaced = torch.where(u < 0.8, torch.full_like(labels, self.unk_id), torch.where(u < 0.9, labels, random_ids))
        masked = row.scatter(1, positions, replaced)
        h = self.encoder(masked).gather(1, positions.unsqueeze(-1).expand(-1, -1, self.channels))
        logits = self.logits(h)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))
