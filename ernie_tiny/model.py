"""The ERNIE / BERT-style encoder, its task heads, in one file that reads top to bottom.

    ErnieConfig -> Embeddings -> SelfAttention -> FeedForward -> Layer -> ErnieModel -> heads

ERNIE 1.0 and ERNIE-tiny are post-LN transformers (LayerNorm after each residual
add) with a LayerNorm on the embedding sum ("pre_encoder_layer_norm" in Paddle)
and ReLU in the feed-forward. Distillation needs every layer's hidden state and
pre-softmax attention scores, so :class:`ErnieModel` returns them when asked;
otherwise attention runs through ``scaled_dot_product_attention`` (SDPA).

Why half precision on a GPU was slower than fp32, and what keeps SDPA on its fast kernels:

- On sm90/sm100 with cuDNN > 9.15 (torch's CUDA 13 wheels) SDPA puts cuDNN attention first,
  for fp16/bf16 only. cuDNN builds and caches an execution plan per input shape, so with
  dynamic padding (a new padded length almost every batch) half precision paid a plan build
  per new shape while fp32 ran the plan-free memory-efficient kernel. On CUDA the encoder
  runs SDPA with flash, memory-efficient and math only (:data:`CUDA_SDPA_BACKENDS`).
- Flash attention takes no mask: a batch without padding passes ``attention_mask=None``
  (or an all-ones mask on the CPU, checked there for free) and gets no mask at all.
- A padded batch's bias is made once per forward, in the dtype q will have (autocast's
  when it is on: an fp32 bias against fp16 q is cast again in every layer), and stored
  with its rows 8-aligned (the memory-efficient kernel otherwise pads and copies it in
  every layer).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

# HeadKind lives in the torch-free heads module; ernie_tiny.model.HeadKind stays importable, many modules use it
from ernie_tiny.heads import IGNORE_INDEX, HeadKind


@dataclass(frozen=True)
class ErnieConfig:
    vocab_size: int = 18000  # ERNIE 1.0 char vocab; ERNIE-tiny's subword vocab is 50006
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072  # FFN width, 4x hidden in every preset
    hidden_act: str = "relu"  # ERNIE 1.0 and ERNIE-tiny use relu; BERT uses gelu
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position_embeddings: int = 513
    type_vocab_size: int = 2  # sentence A / sentence B
    use_task_id: bool = False  # ERNIE 2.0 style task-type embedding added to the input
    task_type_vocab_size: int = 3
    layer_norm_eps: float = 1e-5  # Paddle's LayerNorm default; HF ports often say 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    preset: str = "custom"  # which named preset this came from, printed by every command

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not one of {sorted(ACTIVATIONS)}")
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings",
                     "type_vocab_size", "task_type_vocab_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.layer_norm_eps > 0 or not self.initializer_range > 0:
            raise ValueError(f"layer_norm_eps and initializer_range must be positive, got {self.layer_norm_eps} "
                             f"and {self.initializer_range}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is not a token id (vocab_size {self.vocab_size})")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_preset(cls, name: str, **overrides: object) -> "ErnieConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, prefix: str = "model") -> "ErnieConfig":
        """Read a saved config strictly: every field present with its type, no unknown one, possible values.

        Defaults apply only when a config is created, never when one is read: a saved config
        that lost ``num_heads`` would otherwise build a different model without a word.
        Errors read ``model.num_heads: missing`` (``prefix`` names the block).
        """
        if not isinstance(values, dict):
            raise ValueError(f"{prefix}: expected an object, got {type(values).__name__}")
        for f in fields(cls):
            if f.name not in values:
                raise ValueError(f"{prefix}.{f.name}: missing")
            if not _has_type(values[f.name], f.type):
                raise ValueError(f"{prefix}.{f.name}: expected {f.type}, got {values[f.name]!r}")
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{prefix}.{unknown[0]}: unknown key" + (f" (and {', '.join(unknown[1:])})"
                                                                      if unknown[1:] else ""))
        try:
            return cls(**values)
        except ValueError as err:
            raise ValueError(f"{prefix}: {err}") from None

    def describe(self) -> str:
        return (f"preset {self.preset}: {self.num_layers} layers, hidden {self.hidden_size}, "
                f"{self.num_heads} heads, FFN {self.intermediate_size}, vocab {self.vocab_size}")


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def _has_type(value: object, type_name: str) -> bool:
    """Whether a JSON value fits a config field annotated ``type_name`` (bool is no int; an int is a float)."""
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if type_name == "str":
        return isinstance(value, str)
    raise TypeError(f"no JSON check for field type {type_name}")

# Real sizes are for GPUs and latency benchmarks. The scaled presets keep the real
# shape ratios (12 -> 3 layers, hidden 4:3, heads 4:3, FFN 4x hidden) so that a
# 12 -> 3 distillation trains on 2 CPU cores in minutes.
PRESETS: dict[str, ErnieConfig] = {
    "ernie-1.0-base": ErnieConfig(preset="ernie-1.0-base"),
    "ernie-tiny": ErnieConfig(vocab_size=50006, hidden_size=1024, num_layers=3, num_heads=16,
                              intermediate_size=4096, max_position_embeddings=600, preset="ernie-tiny"),
    "teacher-small": ErnieConfig(hidden_size=192, num_layers=12, num_heads=3, intermediate_size=768,
                                 preset="teacher-small"),
    "student-small": ErnieConfig(vocab_size=50006, hidden_size=256, num_layers=3, num_heads=4,
                                 intermediate_size=1024, max_position_embeddings=600, preset="student-small"),
    "teacher-micro": ErnieConfig(hidden_size=48, num_layers=12, num_heads=3, intermediate_size=192,
                                 max_position_embeddings=130, preset="teacher-micro"),
    "student-micro": ErnieConfig(vocab_size=50006, hidden_size=64, num_layers=3, num_heads=4,
                                 intermediate_size=256, max_position_embeddings=130, preset="student-micro"),
}


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    pooled_output: torch.Tensor  # (B, H): tanh(W h_[CLS])
    hidden_states: tuple[torch.Tensor, ...] | None = None  # num_layers + 1 of (B, T, H), embeddings first
    attention_scores: tuple[torch.Tensor, ...] | None = None  # num_layers of (B, nh, T, T), pre-softmax, unmasked


@dataclass
class ModelOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None
    encoder: EncoderOutput


@dataclass
class PretrainingOutput:
    """What :class:`ErnieForPretraining` returns: the loss, its unweighted terms, and the logits."""

    loss: torch.Tensor | None  # masked_lm + sentence_distance (unweighted sum); None without labels
    terms: dict[str, torch.Tensor]  # "masked_lm" and, with a sentence-distance head and labels, "sentence_distance"
    masked_lm_logits: torch.Tensor  # (M, V) at the positions where labels != -100, row-major; (B, T, V) without labels
    sentence_distance_logits: torch.Tensor | None  # (B, num_labels) from the pooled [CLS]; None without that head
    encoder: EncoderOutput


class Embeddings(nn.Module):
    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.task_type_embeddings = (nn.Embedding(config.task_type_vocab_size, config.hidden_size)
                                     if config.use_task_id else None)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # Paddle: pre_encoder_layer_norm
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                task_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        B, T = input_ids.shape
        if T > self.position_embeddings.num_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings "
                             f"{self.position_embeddings.num_embeddings}")
        positions = torch.arange(T, device=input_ids.device).unsqueeze(0)  # (1, T)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        if self.task_type_embeddings is not None:
            if task_type_ids is None:
                task_type_ids = torch.zeros_like(input_ids)
            x = x + self.task_type_embeddings(task_type_ids)
        return self.dropout(self.layer_norm(x))  # (B, T, H)


class SelfAttention(nn.Module):
    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = config.attention_dropout

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor | None,
                return_scores: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``additive_mask``: (B, 1, 1, T) added to the scores (see :func:`padding_bias`), or None: no padding."""
        B, T, H = x.shape
        q = self.query(x).view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = self.key(x).view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        v = self.value(x).view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        dropout_p = self.attention_dropout if self.training else 0.0
        scores = None
        if return_scores:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_size)  # (B, nh, T, T)
            masked = scores
            if additive_mask is not None:  # added in fp32 at least: half scores + the bias's min would overflow
                masked = scores + additive_mask.to(torch.promote_types(scores.dtype, torch.float32))
            probs = F.dropout(torch.softmax(masked, dim=-1), p=dropout_p, training=self.training)
            context = probs @ v  # (B, nh, T, hs)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask, dropout_p=dropout_p)
        context = context.transpose(1, 2).contiguous().view(B, T, H)  # (B, T, H)
        return self.output(context), scores


class FeedForward(nn.Module):
    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.fc_in = nn.Linear(config.hidden_size, config.intermediate_size)  # Paddle: ffn_fc_0
        self.fc_out = nn.Linear(config.intermediate_size, config.hidden_size)  # Paddle: ffn_fc_1
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.activation(self.fc_in(x)))


class Layer(nn.Module):
    """Post-LN block: h = LN(x + Attn(x)); out = LN(h + FFN(h))."""

    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # post_att_layer_norm
        self.ffn = FeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # post_ffn_layer_norm
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor | None,
                return_scores: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, scores = self.attention(x, additive_mask, return_scores)
        h = self.attention_norm(x + self.dropout(attended))
        return self.ffn_norm(h + self.dropout(self.ffn(h))), scores


class ErnieModel(nn.Module):
    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList([Layer(config) for _ in range(config.num_layers)])
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)  # Paddle: pooled_fc
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, task_type_ids: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attention_scores: bool = False) -> EncoderOutput:
        """``attention_mask`` None means no padding (flash attention on CUDA: no mask to read)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids, task_type_ids)  # (B, T, H)
        additive_mask = padding_bias(attention_mask, compute_dtype(x))  # (B, 1, 1, T) or None
        hidden_states = [x]
        attention_scores = []
        with sdpa_backends(x.device):
            for layer in self.layers:
                x, scores = layer(x, additive_mask, output_attention_scores)
                hidden_states.append(x)
                attention_scores.append(scores)
        pooled = torch.tanh(self.pooler(x[:, 0]))  # (B, H)
        return EncoderOutput(
            last_hidden_state=x,
            pooled_output=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attention_scores=tuple(attention_scores) if output_attention_scores else None,
        )


# cuDNN attention (first on sm90+ in recent torch) plans per shape and runs half precision only;
# these three need no plan and cover every dtype, mask and dropout the encoder uses.
CUDA_SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
MASK_ROW_ALIGNMENT = 8  # elements: the memory-efficient kernel copies a bias whose row stride is not a multiple


def sdpa_backends(device: torch.device):
    """The context the encoder's layers run in: :data:`CUDA_SDPA_BACKENDS` on CUDA, SDPA's own choice elsewhere."""
    return sdpa_kernel(CUDA_SDPA_BACKENDS) if device.type == "cuda" else contextlib.nullcontext()


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls on ``x`` produce: autocast's when it is on for ``x``'s device, else ``x``'s own."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type) and device_type in ("cuda", "cpu"):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


def padding_bias(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, 1, 1, T) additive bias: 0 on real keys, ``finfo(dtype).min`` on padding; None when nothing is padded.

    The minimum is finite so that an all-padding row stays NaN-free. "Nothing padded" is
    checked only for a mask on the CPU (free there); on a GPU that check would wait for the
    device, so callers that know a batch has no padding pass None. On CUDA the bias lives in
    a buffer whose rows are :data:`MASK_ROW_ALIGNMENT`-aligned, sliced back to T.
    """
    if attention_mask is None or (attention_mask.device.type == "cpu" and bool(attention_mask.all())):
        return None
    B, T = attention_mask.shape
    bias = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min  # (B, 1, 1, T)
    if attention_mask.device.type != "cuda" or T % MASK_ROW_ALIGNMENT == 0:
        return bias
    aligned = attention_mask.new_zeros((B, 1, 1, T + MASK_ROW_ALIGNMENT - T % MASK_ROW_ALIGNMENT), dtype=dtype)
    aligned[..., :T] = bias
    return aligned[..., :T]  # (B, 1, 1, T), row stride a multiple of MASK_ROW_ALIGNMENT


class LinearClassifierHead(nn.Module):
    """An encoder plus dropout and one linear layer to ``num_labels``; subclasses choose what it reads."""

    def __init__(self, config: ErnieConfig, num_labels: int):
        super().__init__()
        self.ernie = ErnieModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.num_labels = num_labels
        self.ernie._init_weights(self.classifier)


class ErnieForSequenceClassification(LinearClassifierHead):
    """Single sentences and sentence pairs: logits (B, num_labels) from the pooled [CLS]."""

    head_kind = HeadKind.sequence_classification

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None, **encoder_kwargs) -> ModelOutput:
        encoder = self.ernie(input_ids, token_type_ids, attention_mask, **encoder_kwargs)
        logits = self.classifier(self.dropout(encoder.pooled_output))  # (B, num_labels)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ModelOutput(logits, loss, encoder)


class ErnieForTokenClassification(LinearClassifierHead):
    """NER: logits (B, T, num_labels); labels of -100 (padding, special tokens) are ignored."""

    head_kind = HeadKind.token_classification

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None, **encoder_kwargs) -> ModelOutput:
        encoder = self.ernie(input_ids, token_type_ids, attention_mask, **encoder_kwargs)
        logits = self.classifier(self.dropout(encoder.last_hidden_state))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return ModelOutput(logits, loss, encoder)


# ---- the heads' losses: pure functions of tensors -----------------------------------------------
# The pretraining losses average over the labelled rows only and return a zero that still belongs
# to the graph when nothing is labelled, so that a batch without a masked token (possible with
# stochastic budgets on very short texts) neither NaNs nor breaks DDP's gradient reduction.

def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked positions.

        L_mlm = -(1 / |M|) * sum_{p in M} log softmax(z_p)[y_p],   M = {p : y_p != -100}

    logits: (..., V) float, labels: (...) int64 with the same leading shape (e.g. (B, T, V) and
    (B, T), or the (M, V) logits of the masked positions only and their (M,) labels).
    Returns a scalar; 0 when M is empty.
    """
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    if not (flat_labels != IGNORE_INDEX).any():
        return flat_logits.sum() * 0.0
    return F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=IGNORE_INDEX)


def sentence_distance_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean 3-way cross-entropy over the sentence-pair rows (ERNIE 2.0's sentence distance).

        L_sd = -(1 / |P|) * sum_{b in P} log softmax(s_b)[d_b],   P = {b : d_b != -100}

    logits: (B, 3), labels: (B,) with 0 adjacent, 1 same document, 2 other document, -100 for
    rows that are single texts. Returns a scalar; 0 when P is empty.
    """
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


def pairwise_ranking_loss(scores: torch.Tensor, labels: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """RankNet loss over every (relevant, irrelevant) pair that shares a query group.

    loss = mean over pairs (i, j) with g_i = g_j, y_i > y_j of log(1 + exp(-(s_i - s_j)))

    scores, labels, group_ids: (B,). Returns a scalar; 0 when the batch holds no such pair.
    """
    same_group = group_ids[:, None] == group_ids[None, :]  # (B, B)
    better = labels[:, None] > labels[None, :]  # (B, B)
    pairs = same_group & better
    if not pairs.any():
        return scores.sum() * 0.0
    margins = scores[:, None] - scores[None, :]  # (B, B): s_i - s_j
    return F.softplus(-margins[pairs]).mean()


class ErnieForRanking(nn.Module):
    """DBQA-style answer ranking: one relevance score per (query, answer) pair, logits (B,).

    Trained with a pointwise binary cross-entropy plus, when query group ids are given,
    the pairwise RankNet loss inside each group; scores rank answers for MRR.
    """

    head_kind = HeadKind.ranking

    def __init__(self, config: ErnieConfig, num_labels: int = 2):
        super().__init__()
        self.ernie = ErnieModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.scorer = nn.Linear(config.hidden_size, 1)
        self.num_labels = num_labels
        self.ernie._init_weights(self.scorer)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                group_ids=None, **encoder_kwargs) -> ModelOutput:
        encoder = self.ernie(input_ids, token_type_ids, attention_mask, **encoder_kwargs)
        scores = self.scorer(self.dropout(encoder.pooled_output)).squeeze(-1)  # (B,)
        loss = None
        if labels is not None:
            loss = F.binary_cross_entropy_with_logits(scores, labels.float())
            if group_ids is not None:
                loss = loss + pairwise_ranking_loss(scores, labels, group_ids)
        return ModelOutput(scores, loss, encoder)


class ErnieForMaskedLM(nn.Module):
    """Masked-LM head: transform (dense, act, LayerNorm) then a decoder tied to the word embeddings."""

    head_kind = HeadKind.masked_lm

    def __init__(self, config: ErnieConfig, num_labels: int = 0):
        super().__init__()
        self.ernie = ErnieModel(config)
        self.transform = nn.Linear(config.hidden_size, config.hidden_size)  # Paddle: mask_lm_trans_fc
        self.activation = ACTIVATIONS[config.hidden_act]
        self.transform_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size))  # Paddle: mask_lm_out_fc.b_0
        self.num_labels = num_labels
        self.ernie._init_weights(self.transform)

    def token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (..., V) of hidden states (..., H): transform, LayerNorm, tied decoder."""
        h = self.transform_norm(self.activation(self.transform(hidden)))  # (..., H)
        return h @ self.ernie.embeddings.word_embeddings.weight.T + self.decoder_bias  # (..., V)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None, **encoder_kwargs) -> ModelOutput:
        encoder = self.ernie(input_ids, token_type_ids, attention_mask, **encoder_kwargs)
        logits = self.token_logits(encoder.last_hidden_state)  # (B, T, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return ModelOutput(logits, loss, encoder)


class ErnieForPretraining(ErnieForMaskedLM):
    """ERNIE 1.0 masked LM (decoder tied to the word embeddings) plus ERNIE 2.0's optional sentence-distance head.

    ``num_labels`` is the number of sentence-distance classes (3), or 0 for masked LM only. With
    labels, the vocabulary projection runs only at the masked positions (ERNIE's ``mask_pos``
    gather): at 15% masking that is ~7x less of the largest matrix product. The parameter names
    are :class:`ErnieForMaskedLM`'s, so :meth:`as_masked_lm` (what a checkpoint should hold: the
    sentence-distance layer is a pretraining aid, as BERT's next-sentence head) loads anywhere a
    ``masked_lm`` head is expected, e.g. ``augment --mlm-teacher`` and ``teacher finetune --init``.
    """

    def __init__(self, config: ErnieConfig, num_labels: int = 0):
        super().__init__(config)
        self.num_labels = num_labels
        self.sentence_distance = None
        if num_labels:
            self.dropout = nn.Dropout(config.hidden_dropout)
            self.sentence_distance = nn.Linear(config.hidden_size, num_labels)
            self.ernie._init_weights(self.sentence_distance)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                sentence_distance_labels=None, **encoder_kwargs) -> PretrainingOutput:
        encoder = self.ernie(input_ids, token_type_ids, attention_mask, **encoder_kwargs)
        terms: dict[str, torch.Tensor] = {}
        if labels is None:
            mlm_logits = self.token_logits(encoder.last_hidden_state)  # (B, T, V)
        else:
            masked = labels != -100  # (B, T)
            mlm_logits = self.token_logits(encoder.last_hidden_state[masked])  # (M, V)
            terms["masked_lm"] = masked_lm_loss(mlm_logits, labels[masked])
        sd_logits = None
        if self.sentence_distance is not None:
            sd_logits = self.sentence_distance(self.dropout(encoder.pooled_output))  # (B, num_labels)
            if sentence_distance_labels is not None:
                terms["sentence_distance"] = sentence_distance_loss(sd_logits, sentence_distance_labels)
        loss = sum(terms.values()) if terms else None
        return PretrainingOutput(loss, terms, mlm_logits, sd_logits, encoder)

    def as_masked_lm(self) -> ErnieForMaskedLM:
        """A copy as a plain :class:`ErnieForMaskedLM` (without the sentence-distance layer), for saving."""
        model = ErnieForMaskedLM(self.ernie.config)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("sentence_distance.")}
        model.load_state_dict(state)
        return model.train(self.training)

    @classmethod
    def from_masked_lm(cls, model: ErnieForMaskedLM, num_labels: int = 0) -> "ErnieForPretraining":
        """Continue pretraining a masked-LM checkpoint; a sentence-distance layer starts from random init."""
        pretraining = cls(model.ernie.config, num_labels)
        missing, unexpected = pretraining.load_state_dict(model.state_dict(), strict=False)
        if unexpected or any(not k.startswith("sentence_distance.") for k in missing):
            raise ValueError(f"not a masked-LM state: missing {missing}, unexpected {unexpected}")
        return pretraining


HEADS: dict[HeadKind, type[nn.Module]] = {
    HeadKind.sequence_classification: ErnieForSequenceClassification,
    HeadKind.token_classification: ErnieForTokenClassification,
    HeadKind.ranking: ErnieForRanking,
    HeadKind.masked_lm: ErnieForMaskedLM,
}


def build_model(config: ErnieConfig, head: HeadKind | str, num_labels: int = 2) -> nn.Module:
    """A bare encoder (head ``encoder``) or the encoder with the named task head."""
    head = HeadKind(head)
    if head is HeadKind.encoder:
        return ErnieModel(config)
    return HEADS[head](config, num_labels)


def encoder_of(model: nn.Module) -> ErnieModel:
    """The :class:`ErnieModel` inside a head model (or the model itself)."""
    return model if isinstance(model, ErnieModel) else model.ernie
