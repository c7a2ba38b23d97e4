r"""Two-tower recommenders of the PoliMi course (Practice "Deep Learning Models").

Reference:
    Course framework (MaurizioFD/RecSys_Course_AT_PoliMi) ``TwoTowerRecommenderConcat`` /
    ``TwoTowerRecommenderProduct``; the two-tower idea after Yi et al., "Sampling-Bias-Corrected Neural
    Modeling for Large Corpus Item Recommendations", RecSys 2019.

``tower_type``:

* ``concat`` — user and item embeddings (each ``embedding_size``) are concatenated and passed through
  an MLP (``mlp_hidden_size``, ReLU) ending in one logit;
* ``product`` — each side has its own tower (embedding → MLP, ReLU between layers) producing a vector;
  the logit is the dot product of the two tower outputs (full ranking is one matrix product).

Trained point-wise with binary cross-entropy on the observed interactions (label 1) and uniformly
sampled negatives (label 0; RecBole's ``train_neg_sample_args``).
"""

import torch
from torch import nn
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_normal_initialization
from recbole.utils import InputType

from recbole_ext.errors import ConfigError

TOWER_TYPES = ("concat", "product")


def _mlp(sizes, last_activation):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TwoTower(GeneralRecommender):
    r"""Two-tower model (concat | product) trained with BCE and sampled negatives (course framework)."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.tower_type = str(config["tower_type"])
        if self.tower_type not in TOWER_TYPES:
            raise ConfigError(f"tower_type '{self.tower_type}' is unknown: use one of {', '.join(TOWER_TYPES)}")
        self.embedding_size = int(config["embedding_size"])
        hidden = [int(h) for h in config["mlp_hidden_size"]]
        if self.embedding_size < 1 or any(h < 1 for h in hidden):
            raise ConfigError("embedding_size and every mlp_hidden_size entry must be positive integers")
        self.LABEL = config["LABEL_FIELD"]
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        if self.tower_type == "concat":
            self.mlp = _mlp([2 * self.embedding_size] + hidden + [1], last_activation=False)
        else:
            sizes = [self.embedding_size] + hidden
            self.user_tower = _mlp(sizes, last_activation=False) if hidden else nn.Identity()
            self.item_tower = _mlp(sizes, last_activation=False) if hidden else nn.Identity()
        self.loss = nn.BCEWithLogitsLoss()
        self.apply(xavier_normal_initialization)

    def forward(self, user, item):
        u = self.user_embedding(user)
        i = self.item_embedding(item)
        if self.tower_type == "concat":
            return self.mlp(torch.cat([u, i], dim=-1)).squeeze(-1)
        return (self.user_tower(u) * self.item_tower(i)).sum(dim=-1)

    def calculate_loss(self, interaction):
        logits = self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID])
        return self.loss(logits, interaction[self.LABEL].float())

    def predict(self, interaction):
        return torch.sigmoid(self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID]))

    def full_sort_predict(self, interaction):
        user = interaction[self.USER_ID]
        if self.tower_type == "product":
            users = self.user_tower(self.user_embedding(user))
            items = self.item_tower(self.item_embedding.weight)
            return torch.sigmoid(users @ items.T).reshape(-1)
        n_users = user.shape[0]
        u = self.user_embedding(user).unsqueeze(1).expand(-1, self.n_items, -1)
        i = self.item_embedding.weight.unsqueeze(0).expand(n_users, -1, -1)
        logits = self.mlp(torch.cat([u, i], dim=-1)).squeeze(-1)
        return torch.sigmoid(logits).reshape(-1)
