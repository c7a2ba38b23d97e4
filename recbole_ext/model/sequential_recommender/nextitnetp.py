r"""NextItNetP: the NextItNet backbone exactly as PeterRec pretrains it (causal, teacher forcing).

Reference:
    Yuan et al., "A Simple Convolutional Generative Network for Next Item Recommendation", WSDM 2019 (NextItNet);
    Yuan et al., "Parameter-Efficient Transfer from Sequential Behaviors for User Modeling and Recommendation",
    SIGIR 2020 (PeterRec), code fajieyuan/SIGIR2020_peterrec ``generator_recsys_cau.py``.

Differs from RecBole's ``NextItNet`` (spec §10): 8 blocks ``[1,4]×4`` by default, left-padded sequences read at the
last position, next-item loss at *every* position (teacher forcing), no extra Linear / tied embeddings / L2,
truncated-normal init, full softmax over ``ReLU(h)`` with a separate output layer.
"""

import torch
import torch.nn.functional as F

from recbole_ext.model.sequential_recommender.peterrec_backbone import DilatedPretrainModel, left_align


class NextItNetP(DilatedPretrainModel):
    r"""Causal dilated-CNN backbone of PeterRec (NextItNet, WSDM 2019; PeterRec, SIGIR 2020)."""

    causal = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.mask_pad = bool(config["pretrain_mask_pad"])

    def forward(self, item_seq, item_seq_len):
        return self.encoder(left_align(item_seq, item_seq_len))

    def last_hidden(self, interaction):
        return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])[:, -1]

    def calculate_loss(self, interaction):
        # the original row = [left-padded history..., target]; input = row[:, :-1], labels = row[:, 1:]
        row = torch.cat(
            [left_align(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]), interaction[self.POS_ITEM_ID].unsqueeze(1)],
            dim=1,
        )
        logits = self.logits(self.encoder(row[:, :-1]))
        labels = row[:, 1:]
        if self.mask_pad:  # fix option of quirk P1: no loss on transitions into padding
            labels = labels.masked_fill(labels == 0, -100)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
