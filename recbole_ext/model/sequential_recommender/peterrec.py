r"""PeterRec: parameter-efficient transfer of a pretrained NextItNet / GRec backbone with model patches.

Reference:
    Yuan, He, Karatzoglou, Zhang, "Parameter-Efficient Transfer from Sequential Behaviors for User Modeling and
    Recommendation", SIGIR 2020 (arXiv 2001.04253); code fajieyuan/SIGIR2020_peterrec
    (``PeterRec_cau_serial.py``, ``PeterRec_cau_parallel.py``, ``PeterRec_noncau_parallel.py``, ``*_FineAll.py``).

Data: a RecBole *general* dataset whose ``item_id`` is the target vocabulary (target-domain items or attribute
classes) and whose ``.user`` file carries ``source_seq`` (token_seq of the backbone's item tokens); see
:mod:`recbole_ext.data.peterrec_data`.

* The backbone checkpoint (``pretrained_model_file``, written by ``run_recbole.py`` for ``NextItNetP`` or ``GRec``)
  gives the encoder weights, its hyperparameters and its item vocabulary; ``source_seq`` tokens are mapped onto that
  vocabulary (quirk P2 fixed), unknown tokens raise :class:`CheckpointError`. The pretraining softmax is dropped.
* Input: causal ``[source (left-padded)..., CLS]``, user vector = hidden state at CLS; non-causal
  ``[CLS, source..., CLS]``, user vector = ``h_first + h_last``. CLS = the backbone's ``<UNK>`` row (quirk P3).
* Score ``s(u, j) = <u, e_j>`` with a new target table (truncated-normal 0.02). Loss: BCE with one uniform negative
  from ``1..T-1`` (not the positive), ``-log(σ(s+)+1e-24) - log(1-σ(s-)+1e-24)``, plus
  ``peterrec_reg_weight · ½ · ||E_target||²`` over the whole table (quirk P7).
* ``peterrec_mode``: ``patch`` (PeterRec: 2 patches per block, trains patches + every ``layer_norm2`` + target
  table), ``full`` (FineAll: everything, no patches; user vector = last source item (causal) / mean over all
  positions, padding included (GRec) as in the original ``*_FineAll.py``), ``head`` (frozen backbone, target table only), ``scratch`` (no pretraining, all trained;
  backbone sizes from this run's config).
* ``peterrec_user_vector``: ``mean`` averages the real source positions only (masked mean); ``mean_with_padding``
  averages every position of the padded row, left padding included (the ``GRec_TF_FineAll`` readout and this
  package's ``mean`` before issue 14).
* ``peterrec_patch_init``: ``faithful`` (quirk P6, and P5 for parallel) or ``near_identity`` (zero up-projection,
  parallel branch without the extra identity: the patched encoder equals the pretrained one at initialisation).
"""

import torch
from torch import nn
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_ext import options
from recbole_ext.checkpoint import load_checkpoint
from recbole_ext.errors import CheckpointError, ConfigError
from recbole_ext.model.sequential_recommender.peterrec_backbone import (
    INSERTIONS,
    PATCH_INITS,
    DilatedEncoder,
    left_align,
    parse_dilations,
    trunc_normal_,
)

MODES = ("patch", "full", "head", "scratch")
BACKBONES = {"NextItNetP": True, "GRec": False}  # model name -> causal
USER_VECTORS = ("auto", "cls", "last_item", "mean", "mean_with_padding")


def masked_mean(h, real):
    """Mean of ``h [B, T, C]`` over the positions where ``real [B, T]`` is True (a row with none gives 0)."""
    weights = real.to(h.dtype).unsqueeze(-1)
    return (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class PeterRec(GeneralRecommender):
    r"""PeterRec fine-tuning (SIGIR 2020) over a NextItNetP / GRec backbone: model patches, serial or parallel."""

    input_type = InputType.POINTWISE
    trainer_name = "PeterRec"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        choices = options.check_choices(
            config,
            {"peterrec_mode": MODES, "peterrec_insertion": INSERTIONS, "peterrec_user_vector": USER_VECTORS,
             "peterrec_patch_init": PATCH_INITS},
            "PeterRec",
        )
        self.mode, self.insertion = choices["peterrec_mode"], choices["peterrec_insertion"]
        self.source_field = config["source_seq_field"]
        if self.source_field not in dataset.field2id_token:
            raise ConfigError(
                f"dataset '{config['dataset']}' has no token_seq field '{self.source_field}': load it from the .user "
                f"file (load_col: {{user: [user_id, {self.source_field}]}}); see recbole_ext.data.peterrec_data"
            )
        source_tokens = [str(t) for t in dataset.field2id_token[self.source_field]]
        self.reg_weight = float(config["peterrec_reg_weight"])

        if self.mode == "scratch":
            backbone_name = str(config["peterrec_backbone"])
            if backbone_name not in BACKBONES:
                raise ConfigError(f"peterrec_backbone '{backbone_name}': use one of {', '.join(BACKBONES)}")
            hyper = config
            vocab = source_tokens  # [PAD] first, like a pretraining dataset's item tokens
            state = None
        else:
            path = config["pretrained_model_file"]
            if not path:
                raise CheckpointError(
                    f"peterrec_mode '{self.mode}' needs pretrained_model_file: the checkpoint of a NextItNetP or GRec "
                    "run (python run_recbole.py --model=NextItNetP ... writes saved/NextItNetP-<time>-<pid>.pth); "
                    "or use peterrec_mode: scratch"
                )
            ckpt = load_checkpoint(path)
            backbone_name = ckpt["meta"].get("model")
            if backbone_name not in BACKBONES:
                raise CheckpointError(
                    f"{path} is a checkpoint of model '{backbone_name}', which PeterRec cannot fine-tune: "
                    f"pretrain one of {', '.join(BACKBONES)} first"
                )
            hyper = ckpt["config"]
            vocab = (ckpt.get("other_parameter") or {}).get("item_tokens")
            if not vocab:
                raise CheckpointError(f"{path} holds no item vocabulary ('item_tokens'); re-run its pretraining")
            state = ckpt["state_dict"]
        self.backbone_name = backbone_name
        self.causal = BACKBONES[backbone_name]
        self.channels = int(hyper["embedding_size"])
        self.kernel_size = int(hyper["kernel_size"])
        self.dilations = parse_dilations(hyper["dilations"])
        vocab_size = len(vocab) + 1  # + <UNK> = [CLS]
        self.cls_id = len(vocab)

        # source-field id -> backbone id (vectorised lookup table); every token must be known to the backbone
        index = {tok: i for i, tok in enumerate(vocab)}
        missing = [tok for tok in source_tokens[1:] if tok not in index]
        if missing:
            raise CheckpointError(
                f"{len(missing)} of {len(source_tokens) - 1} source tokens of dataset '{config['dataset']}' are not in "
                f"the backbone's vocabulary ({backbone_name}, {len(vocab)} items), e.g. {missing[:5]}: fine-tune on "
                "source sequences built from the pretraining dataset's items (the same item tokens)"
            )
        lookup = torch.tensor([0] + [index[tok] for tok in source_tokens[1:]], dtype=torch.long)
        self.register_buffer("source_lookup", lookup, persistent=False)

        self.encoder = DilatedEncoder(vocab_size, self.channels, self.dilations, self.kernel_size, self.causal)
        if state is not None:
            self._load_backbone(state, config["pretrained_model_file"])

        if self.mode == "patch":
            cardinality = int(config["peterrec_cardinality"])
            patch_size = config["peterrec_patch_size"]
            patch_size = self.channels // (4 * cardinality) if patch_size is None else int(patch_size)
            if patch_size < 1 or self.channels % patch_size or (config["peterrec_patch_size"] is None and self.channels % (4 * cardinality)):
                raise ConfigError(
                    f"peterrec_patch_size {patch_size} must be a positive divisor of the channel count "
                    f"{self.channels} (default C/(4·cardinality) needs C divisible by {4 * cardinality})"
                )
            for block in self.encoder.blocks:
                block.add_patches(self.insertion, patch_size, cardinality, choices["peterrec_patch_init"])

        self.target_embedding = nn.Embedding(self.n_items, self.channels)
        trunc_normal_(self.target_embedding.weight.data)

        user_vector = choices["peterrec_user_vector"]
        if user_vector == "auto":
            # FineAll: last source item (causal) / mean over all positions, padding included (GRec_TF_FineAll)
            user_vector = ("last_item" if self.causal else "mean_with_padding") if self.mode == "full" else "cls"
        self.user_vector = user_vector
        self._freeze()

    # --------------------------------------------------------------------------------------------
    def _load_backbone(self, state, path):
        own = self.encoder.state_dict()
        loaded = {}
        for name, tensor in own.items():
            key = "encoder." + name
            if key not in state:
                raise CheckpointError(f"{path}: backbone parameter '{key}' is missing; the checkpoint is incomplete")
            if tuple(state[key].shape) != tuple(tensor.shape):
                raise CheckpointError(
                    f"{path}: '{key}' has shape {tuple(state[key].shape)} in the checkpoint but {tuple(tensor.shape)} "
                    "here — the backbone's vocabulary or sizes do not match"
                )
            loaded[name] = state[key]
        self.encoder.load_state_dict(loaded)

    def _freeze(self):
        for name, param in self.encoder.named_parameters():
            if self.mode == "head":
                param.requires_grad_(False)
            elif self.mode == "patch":
                param.requires_grad_(".mp1." in name or ".mp2." in name or ".layer_norm2." in name)

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    # --------------------------------------------------------------------------------------------
    def user_representation(self, interaction):
        raw = interaction[self.source_field]
        ids = self.source_lookup[raw]
        ids = left_align(ids, (raw > 0).sum(dim=1))
        cls = torch.full_like(ids[:, :1], self.cls_id)
        if self.user_vector == "cls":
            row = torch.cat([ids, cls], dim=1) if self.causal else torch.cat([cls, ids, cls], dim=1)
            h = self.encoder(row)
            return h[:, -1] if self.causal else h[:, 0] + h[:, -1]
        h = self.encoder(ids)
        if self.user_vector == "last_item":
            return h[:, -1]
        if self.user_vector == "mean_with_padding":
            return h.mean(dim=1)
        return masked_mean(h, ids > 0)

    def calculate_loss(self, interaction):
        u = self.user_representation(interaction)
        pos = interaction[self.ITEM_ID]
        # one negative per positive, uniform over 1..T-1 without the positive
        neg = torch.randint(1, max(self.n_items - 1, 2), pos.shape, device=pos.device)
        neg = neg + (neg >= pos).long()
        pos_s = (u * self.target_embedding(pos)).sum(-1)
        neg_s = (u * self.target_embedding(neg)).sum(-1)
        loss = -torch.log(torch.sigmoid(pos_s) + 1e-24) - torch.log(1 - torch.sigmoid(neg_s) + 1e-24)
        reg = self.reg_weight * 0.5 * self.target_embedding.weight.pow(2).sum()
        return loss.mean() + reg

    def predict(self, interaction):
        u = self.user_representation(interaction)
        return (u * self.target_embedding(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        return self.user_representation(interaction) @ self.target_embedding.weight.t()
