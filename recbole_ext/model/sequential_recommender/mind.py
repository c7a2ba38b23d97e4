"""MIND multi-interest extractor (dynamic-routing capsules), with the BaM training scheme.

Chao Li, Zhiyuan Liu, Mengmeng Wu, Yuchi Xu, Huan Zhao, Pipei Huang, Guoliang Kang, Qiwei Chen, Wei Li,
Dik Lun Lee, "Multi-Interest Network with Dynamic Routing for Recommendation at Tmall", CIKM 2019 — in
the form used by BaM (Lee, Yun, Kang, IEEE BigData 2024). ``BaM_MIND`` = MIND with ``selection: p`` and
``multi_loss: True``.
"""

import torch
import torch.nn as nn

from recbole_ext import options
from recbole_ext.errors import ConfigError
from recbole_ext.model.sequential_recommender.multi_interest import MultiInterestRecommender

ROUTING_INITS = ("random", "fixed_eval")


def squash(z):
    """``(|z|^2 / (1 + |z|^2)) * z / sqrt(|z|^2 + 1e-9)``."""
    norm2 = (z * z).sum(dim=-1, keepdim=True)
    return norm2 / (1 + norm2) * z / torch.sqrt(norm2 + 1e-9)


class MIND(MultiInterestRecommender):
    """MIND (Li et al., "Multi-Interest Network with Dynamic Routing for Recommendation at Tmall",
    CIKM 2019), as used by BaM (Lee, Yun, Kang, IEEE BigData 2024).

    Dynamic routing: one shared bilinear map S, ``routing_iters`` (3) iterations, K capsules.

    Routing logits start from N(0, 1), drawn afresh on every forward pass, evaluation included
    (quirk Q2, faithful default ``routing_init: random``). ``routing_init: fixed_eval`` draws them
    afresh in training but uses one fixed draw (a buffer) at evaluation, so evaluation is deterministic.
    Weights are a softmax over the sequence; padded positions are then zeroed without renormalisation.
    Iterations before the last use a stop-gradient copy of the mapped items.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.routing_init = options.check_choices(config, {"routing_init": ROUTING_INITS}, "MIND")["routing_init"]
        self.routing_iters = int(config["routing_iters"])
        if self.routing_iters < 1:
            raise ConfigError(f"MIND: routing_iters must be >= 1, got {self.routing_iters}")
        d = self.embedding_size
        self.bilinear = nn.Linear(d, d, bias=False)
        self.reset_parameters()
        self.register_buffer("eval_routing_logits", torch.randn(self.interest_num, self.max_seq_length))

    def initial_routing_logits(self, batch_size, length, device):
        if self.routing_init == "fixed_eval" and not self.training:
            return self.eval_routing_logits[:, :length].unsqueeze(0).expand(batch_size, -1, -1)
        return torch.randn(batch_size, self.interest_num, length, device=device)

    def extract_interests(self, item_seq, item_seq_len):
        mask = (item_seq != 0).to(self.item_embedding.weight.dtype)  # [B, L]
        emb = self.item_embedding(item_seq) * mask.unsqueeze(-1)
        u_hat = self.bilinear(emb)  # [B, L, d]; identical for every capsule (tiling not materialised)
        u_hat_detached = u_hat.detach()
        logits = self.initial_routing_logits(item_seq.shape[0], item_seq.shape[1], item_seq.device)
        for it in range(self.routing_iters):
            weights = torch.softmax(logits, dim=-1) * mask.unsqueeze(1)  # [B, K, L]
            if it < self.routing_iters - 1:
                z = squash(weights @ u_hat_detached)  # [B, K, d]
                logits = logits + z @ u_hat_detached.transpose(1, 2)
            else:
                z = squash(weights @ u_hat)
        return z, None
