"""The backbones CaliTune fine-tunes, one adapter each: differentiable scores over a user's candidates,
full score rows for the scoring pass, and the user side that ``calitune_freeze_items`` keeps training."""

import numpy as np
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction


class Backbone:
    """Adapter base: full score rows through the model's own ``full_sort_predict``."""

    def __init__(self, model, config):
        self.model = model
        self.uid_field = config["USER_ID_FIELD"]
        self.device = config["device"]

    def user_parameters(self):
        raise NotImplementedError

    def candidate_scores(self, users, cand):
        """Raw scores ``[b, m]`` of the candidates ``cand`` (with gradients), and the backbone's own
        accuracy loss (``None``: CaliTune's listwise loss)."""
        raise NotImplementedError

    def full_scores(self, users):
        inter = Interaction({self.uid_field: users})
        return self.model.full_sort_predict(inter.to(self.device)).view(users.shape[0], -1)

    def clear_cache(self):
        """Forget what the model caches between predictions (DMF: its item tower)."""


class BPRBackbone(Backbone):
    def user_parameters(self):
        return list(self.model.user_embedding.parameters())

    def candidate_scores(self, users, cand):
        u = self.model.user_embedding(users)
        return (u.unsqueeze(1) * self.model.item_embedding(cand)).sum(-1), None

    def full_scores(self, users):
        return self.model.user_embedding(users) @ self.model.item_embedding.weight.t()


class DMFBackbone(Backbone):
    def __init__(self, model, config):
        super().__init__(model, config)
        self._item_user = None  # the item x user interaction matrix, built on first use

    def user_parameters(self):
        return list(self.model.user_linear.parameters()) + list(self.model.user_fc_layers.parameters())

    def _item_tower(self):
        model = self.model
        if self._item_user is None:
            coo = model.interaction_matrix.tocoo()
            index = torch.from_numpy(np.vstack([coo.col, coo.row]).astype(np.int64))
            self._item_user = torch.sparse_coo_tensor(
                index, torch.from_numpy(coo.data.astype(np.float32)), (model.n_items, model.n_users)
            ).coalesce().to(self.device)
        return model.item_fc_layers(torch.sparse.mm(self._item_user, model.item_linear.weight.t()))

    def candidate_scores(self, users, cand):
        u = self.model.user_fc_layers(self.model.get_user_embedding(users))
        return (u.unsqueeze(1) * self._item_tower()[cand]).sum(-1), None

    def clear_cache(self):
        self.model.i_embedding = None


class MultiVAEBackbone(Backbone):
    def user_parameters(self):  # the encoder is the user side; the decoder holds the item representations
        return list(self.model.encoder.parameters())

    def candidate_scores(self, users, cand):
        """The candidates' logits; the accuracy term is MultiVAE's own annealed ELBO."""
        model = self.model
        rating = model.get_rating_matrix(users)
        model.update += 1
        anneal = (
            min(model.anneal_cap, 1.0 * model.update / model.total_anneal_steps)
            if model.total_anneal_steps > 0
            else model.anneal_cap
        )
        z, mu, logvar = model(rating)
        kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)) * anneal
        ce = -(F.log_softmax(z, 1) * rating).sum(1).mean()
        return torch.gather(z, 1, cand), ce + kl


BACKBONES = {"BPR": BPRBackbone, "DMF": DMFBackbone, "MultiVAE": MultiVAEBackbone}
