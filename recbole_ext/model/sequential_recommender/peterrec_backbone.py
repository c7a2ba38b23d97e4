r"""Building blocks shared by NextItNetP (causal), GRec (non-causal) and PeterRec (fine-tuning with patches).

Follows the PeterRec spec (fajieyuan/SIGIR2020_peterrec, ``ops.py``):

* dilated conv, kernel ``k``: causal = ``(k-1)·d`` zeros on the left then a VALID dilated conv
  (``out[t] = W0·x[t-2d] + W1·x[t-d] + W2·x[t] + b``); non-causal = SAME padding (``d·(k-1)/2`` each side);
* residual block with dilation ``d``: ``a = ReLU(LN1(conv1(x; d)))``, ``o = ReLU(LN2(conv2(a; 2d)))``,
  ``out = x + o`` (LayerNorm over channels, eps 1e-8; no LN before conv1, nothing after the addition);
* model patch ``MP(y) = y + Σ_g Up_g(GELU_tanh(Down_g(y)))``, bottleneck ``C -> C/(4G) -> C`` with biases,
  weights truncated-normal std 0.02 (the up-projection is *not* zero-initialised: quirk P6);
* patch insertion: ``serial`` (``c = MP(conv(x))``) or ``parallel`` (``c = conv(x) + MP(x)``, which keeps the
  extra identity across each conv: quirk P5);
* patch initialisation (not in the original): ``faithful`` as above, or ``near_identity``: the up-projection starts
  at zero and the parallel branch adds only the bottleneck (no P5 identity), so at initialisation the patched encoder
  computes exactly the pretrained one (the faithful parallel patch changes the hidden state by the order of 100 %).

The encoder owns the item embedding (``V = n_items + 1`` rows: RecBole's items incl. the ``[PAD]`` row 0,
which is a learned token as in the original's file-level padding (quirk P1), plus one extra row ``V-1`` that
plays the original ``<UNK>`` role: the ``[CLS]`` token of fine-tuning and the ``[MASK]`` token of GRec).
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_ext.errors import ConfigError

INSERTIONS = ("serial", "parallel")
PATCH_INITS = ("faithful", "near_identity")


def trunc_normal_(tensor, std=0.02):
    """TF ``truncated_normal``: normal(0, std) re-drawn outside two standard deviations."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


class DilatedConv(nn.Module):
    """1-D dilated convolution over ``[B, T, C]`` with causal (left) or SAME padding; length unchanged."""

    def __init__(self, channels, kernel_size, dilation, causal):
        super().__init__()
        self.kernel_size, self.dilation, self.causal = int(kernel_size), int(dilation), bool(causal)
        if not self.causal and (self.kernel_size - 1) % 2:
            raise ConfigError(f"kernel_size {kernel_size}: a non-causal (GRec) encoder needs an odd kernel size")
        self.weight = nn.Parameter(trunc_normal_(torch.empty(channels, channels, self.kernel_size)))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):  # x: [B, T, C]
        total = (self.kernel_size - 1) * self.dilation
        pad = (total, 0) if self.causal else (total // 2, total // 2)
        h = F.pad(x.transpose(1, 2), pad)
        return F.conv1d(h, self.weight, self.bias, dilation=self.dilation).transpose(1, 2)


class ModelPatch(nn.Module):
    """``MP(y) = y + Σ_g Up_g(GELU(Down_g(y)))`` (``get_mp``); ``cardinality`` groups of width ``patch_size``.

    ``identity=False`` drops the leading ``y`` (bottleneck only); ``zero_up=True`` starts every up-projection at
    zero, so the bottleneck outputs exactly 0 at initialisation.
    """

    def __init__(self, channels, patch_size, cardinality=1, identity=True, zero_up=False):
        super().__init__()
        self.identity = bool(identity)
        self.down = nn.ModuleList(nn.Linear(channels, patch_size) for _ in range(cardinality))
        self.up = nn.ModuleList(nn.Linear(patch_size, channels) for _ in range(cardinality))
        for layer in list(self.down) + list(self.up):
            trunc_normal_(layer.weight.data)
            nn.init.zeros_(layer.bias)
        if zero_up:
            for layer in self.up:
                nn.init.zeros_(layer.weight)
        # Saved with the weights: a checkpoint fine-tuned with one patch form refuses to load into the other
        # (same shapes, different function), instead of silently computing something else.
        self.register_buffer("keeps_input", torch.tensor(float(self.identity)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "keeps_input"
        if not any(name.startswith(prefix) for name in state_dict):  # a backbone without patches: nothing to check
            return super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        saved = float(state_dict.get(key, torch.tensor(1.0)))  # patches saved before the option: faithful
        if saved != float(self.identity):
            raise ConfigError(
                f"{prefix.rstrip('.')}: the checkpoint's parallel patches were trained "
                f"{'with' if saved else 'without'} the identity term, this model is built "
                f"{'with' if self.identity else 'without'} it — set peterrec_patch_init to the value the "
                "checkpoint was fine-tuned with (near_identity drops it for parallel patches)"
            )
        state_dict[key] = torch.tensor(saved)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, y):
        out = y if self.identity else torch.zeros_like(y)
        for down, up in zip(self.down, self.up):
            out = out + up(F.gelu(down(y), approximate="tanh"))
        return out


class ResidualBlock(nn.Module):
    """NextItNet residual block "b" (dilations ``d`` and ``2d``), optionally with two model patches."""

    def __init__(self, channels, kernel_size, dilation, causal):
        super().__init__()
        self.conv1 = DilatedConv(channels, kernel_size, dilation, causal)
        self.layer_norm1 = nn.LayerNorm(channels, eps=1e-8)
        self.conv2 = DilatedConv(channels, kernel_size, 2 * dilation, causal)
        self.layer_norm2 = nn.LayerNorm(channels, eps=1e-8)
        self.insertion = None
        self.mp1 = self.mp2 = None

    def add_patches(self, insertion, patch_size, cardinality=1, init="faithful"):
        """Two model patches; ``insertion`` one of :data:`INSERTIONS`, ``init`` one of :data:`PATCH_INITS`
        (PeterRec checks both options). ``near_identity``: zero up-projection, and a parallel branch without the
        P5 identity, so the block computes exactly what the pretrained block did until the patches train."""
        channels = self.layer_norm1.normalized_shape[0]
        near_identity = init == "near_identity"
        identity = not (near_identity and insertion == "parallel")  # serial MP needs y: c = conv(x) + bottleneck
        self.insertion = insertion
        self.mp1 = ModelPatch(channels, patch_size, cardinality, identity=identity, zero_up=near_identity)
        self.mp2 = ModelPatch(channels, patch_size, cardinality, identity=identity, zero_up=near_identity)

    def _conv(self, conv, patch, x):
        """``conv(x)`` with its model patch: after it (serial) or beside it (parallel); plain without patches."""
        if self.insertion == "serial":
            return patch(conv(x))
        if self.insertion == "parallel":
            return conv(x) + patch(x)
        return conv(x)

    def forward(self, x):
        a = F.relu(self.layer_norm1(self._conv(self.conv1, self.mp1, x)))
        c2 = self._conv(self.conv2, self.mp2, a)
        return x + F.relu(self.layer_norm2(c2))


class DilatedEncoder(nn.Module):
    """Item embedding ``[V, C]`` + stack of residual blocks (one per entry of ``dilations``)."""

    def __init__(self, vocab_size, channels, dilations, kernel_size, causal):
        super().__init__()
        if not dilations:
            raise ConfigError("dilations must list at least one dilation (the original uses [1, 4, 1, 4, 1, 4, 1, 4])")
        self.causal = bool(causal)
        self.item_embedding = nn.Embedding(vocab_size, channels)
        trunc_normal_(self.item_embedding.weight.data)
        self.blocks = nn.ModuleList(ResidualBlock(channels, kernel_size, int(d), causal) for d in dilations)

    @property
    def channels(self):
        return self.item_embedding.embedding_dim

    def forward(self, ids):  # ids: [B, T] -> [B, T, C]
        h = self.item_embedding(ids)
        for block in self.blocks:
            h = block(h)
        return h


def left_align(seq, seq_len, pad=0):
    """Turn RecBole's right-padded ``[B, L]`` sequences into left-padded ones (the original layout)."""
    length = seq.size(1)
    idx = torch.arange(length, device=seq.device).unsqueeze(0) - (length - seq_len.unsqueeze(1))
    moved = seq.gather(1, idx.clamp(min=0))
    return torch.where(idx >= 0, moved, torch.full_like(moved, pad))


def parse_dilations(value):
    if isinstance(value, str):
        value = [int(v) for v in value.replace("[", " ").replace("]", " ").replace(",", " ").split()]
    dilations = [int(v) for v in (value or [])]
    if not dilations or any(d < 1 for d in dilations):
        raise ConfigError(f"dilations {value!r}: give a list of positive integers, e.g. [1, 4, 1, 4, 1, 4, 1, 4]")
    return dilations


def parameter_formula(channels, n_blocks, kernel_size=3, patch_size=None, cardinality=1):
    """Parameter counts of spec §5: backbone conv+LN, patches, LN2 (for tests and the benchmark)."""
    c = channels
    h = patch_size if patch_size is not None else c // (4 * cardinality)
    conv = kernel_size * c * c + c
    block = 2 * conv + 2 * 2 * c
    patch = cardinality * (c * h + h + h * c + c)
    return {
        "backbone": n_blocks * block,
        "patches": 2 * n_blocks * patch,
        "layer_norm2": n_blocks * 2 * c,
    }


# ------------------------------------------------------------------------------------------------
# pretraining base (NextItNetP / GRec)
# ------------------------------------------------------------------------------------------------
class DilatedPretrainModel(SequentialRecommender):
    """Common part of the two pretraining backbones: encoder, full-softmax output on ReLU(h), vocabulary.

    The item tokens of the dataset are stored in the checkpoint (``other_parameter``: ``item_tokens``) so that
    PeterRec maps its source sequences onto exactly this vocabulary (quirk P2 fixed: one source vocabulary).
    """

    causal = True
    other_parameter_name = ["item_tokens"]

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.channels = int(config["embedding_size"])
        self.kernel_size = int(config["kernel_size"])
        self.dilations = parse_dilations(config["dilations"])
        if self.channels < 1:
            raise ConfigError("embedding_size (the channel count C) must be a positive integer")
        self.vocab_size = self.n_items + 1  # + the <UNK> row, used as [CLS] / [MASK]
        self.unk_id = self.n_items
        self.encoder = DilatedEncoder(self.vocab_size, self.channels, self.dilations, self.kernel_size, self.causal)
        # 1x1-conv "logits" layer of the full-softmax mode (is_negsample=False), applied to ReLU(h)
        self.output = nn.Linear(self.channels, self.vocab_size)
        trunc_normal_(self.output.weight.data)
        nn.init.zeros_(self.output.bias)
        self.item_tokens = [str(t) for t in dataset.field2id_token[self.ITEM_ID]]

    def logits(self, h):
        return self.output(F.relu(h))

    def full_sort_predict(self, interaction):
        return self.logits(self.last_hidden(interaction))[:, : self.n_items]

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)
