"""ComiRec-SA multi-interest extractor (with the BaM training scheme).

Yukuo Cen, Jianwei Zhang, Xu Zou, Chang Zhou, Hongxia Yang, Jie Tang, "Controllable Multi-Interest
Framework for Recommendation", KDD 2020 — self-attentive variant (ComiRec-SA), as used by BaM
(Lee, Yun, Kang, "Towards True Multi-interest Recommendation: Enhanced Scheme for Balanced Interest
Training", IEEE BigData 2024). ``BaM_ComiRec`` = this model with ``selection: p`` and ``multi_loss: True``.
"""

import torch
import torch.nn as nn

from recbole_ext.model.sequential_recommender.multi_interest import MultiInterestRecommender


class ComiRec(MultiInterestRecommender):
    """ComiRec-SA (Cen et al., "Controllable Multi-Interest Framework for Recommendation", KDD 2020),
    trained with BaM's scheme (Lee, Yun, Kang, IEEE BigData 2024).

    ``A = softmax_L(W2 tanh(W1 (E + P)))``, interests ``M = A E`` (``[B, K, d]``).

    The positional parameter P (``add_pos``) enters only the attention, not the value vectors;
    padded positions get ``-2^32 + 1`` before the softmax over the sequence.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        self.add_pos = bool(config["add_pos"])
        self.position_embedding = nn.Parameter(torch.zeros(1, self.max_seq_length, d))
        self.linear1 = nn.Sequential(nn.Linear(d, 4 * d, bias=False), nn.Tanh())
        self.linear2 = nn.Linear(4 * d, self.interest_num, bias=False)
        self.reset_parameters()

    def extract_interests(self, item_seq, item_seq_len):
        valid = item_seq != 0  # [B, L]
        mask = valid.to(self.item_embedding.weight.dtype)
        emb = self.item_embedding(item_seq) * mask.unsqueeze(-1)  # [B, L, d]
        length = item_seq.shape[1]
        pos = self.position_embedding[0, :length] if self.add_pos else None
        if float(mask.mean()) < 0.75:
            # attention logits only at real positions (padded ones are overwritten below anyway):
            # identical values, less work for short histories
            rows, cols = valid.nonzero(as_tuple=True)
            hidden = emb[rows, cols] + pos[cols] if pos is not None else emb[rows, cols]
            logits = self.linear2(self.linear1(hidden))  # [n_valid, K]
            attention = logits.new_full((item_seq.shape[0], length, self.interest_num), -(2.0**32) + 1)
            attention = attention.index_put((rows, cols), logits).transpose(1, 2)  # [B, K, L]
        else:
            hidden = emb + pos if pos is not None else emb
            attention = self.linear2(self.linear1(hidden)).transpose(1, 2)  # [B, K, L]
            attention = attention.masked_fill(~valid.unsqueeze(1), -(2.0**32) + 1)
        attention = torch.softmax(attention, dim=-1)
        interests = attention @ emb  # [B, K, d]
        return interests, attention
