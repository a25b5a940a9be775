"""A small pre-LayerNorm Transformer encoder-decoder for translation, with the two graphs that are
exported for serving: ``encoder(src_ids) -> memory`` and
``decoder_step(tgt_prefix, memory, memory_mask) -> next_logits``. The decode loop lives in the
serving code (``app.tasks.translation``), so beam search and batching stay out of the graphs.

Attention is written with plain matmuls and additive masks (causal mask from ``triu``) so the
dynamo exporter keeps batch, source and target lengths dynamic.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

NEGATIVE = -1e4  # additive mask value: large but finite, so fully masked rows never give NaN


@dataclass(frozen=True)
class Seq2SeqShape:
    vocab_size: int
    d_model: int = 256
    heads: int = 4
    encoder_layers: int = 4
    decoder_layers: int = 3
    feedforward: int = 1024
    dropout: float = 0.1
    max_positions: int = 256
    pad_id: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class _Attention(nn.Module):
    def __init__(self, shape: Seq2SeqShape):
        super().__init__()
        self.heads = shape.heads
        self.query = nn.Linear(shape.d_model, shape.d_model)
        self.key_value = nn.Linear(shape.d_model, 2 * shape.d_model)
        self.out = nn.Linear(shape.d_model, shape.d_model)
        self.dropout = shape.dropout

    def forward(self, x: torch.Tensor, context: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        head_width = width // self.heads
        q = self.query(x).view(batch, length, self.heads, head_width).transpose(1, 2)
        k, v = self.key_value(context).view(batch, -1, 2, self.heads, head_width).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_width) + additive_mask
        weights = F.dropout(torch.softmax(scores, dim=-1), self.dropout, self.training)
        return self.out((weights @ v).transpose(1, 2).reshape(batch, length, width))


class _FeedForward(nn.Sequential):
    def __init__(self, shape: Seq2SeqShape):
        super().__init__(nn.Linear(shape.d_model, shape.feedforward), nn.GELU(), nn.Dropout(shape.dropout),
                         nn.Linear(shape.feedforward, shape.d_model))


class _EncoderLayer(nn.Module):
    def __init__(self, shape: Seq2SeqShape):
        super().__init__()
        self.norm_attention, self.norm_feedforward = nn.LayerNorm(shape.d_model), nn.LayerNorm(shape.d_model)
        self.attention, self.feedforward = _Attention(shape), _FeedForward(shape)
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, x: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        h = self.norm_attention(x)
        x = x + self.dropout(self.attention(h, h, source_mask))
        return x + self.dropout(self.feedforward(self.norm_feedforward(x)))


class _DecoderLayer(nn.Module):
    def __init__(self, shape: Seq2SeqShape):
        super().__init__()
        self.norm_self, self.norm_cross, self.norm_feedforward = (nn.LayerNorm(shape.d_model) for _ in range(3))
        self.self_attention, self.cross_attention = _Attention(shape), _Attention(shape)
        self.feedforward = _FeedForward(shape)
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, causal_mask: torch.Tensor,
                memory_mask: torch.Tensor) -> torch.Tensor:
        h = self.norm_self(y)
        y = y + self.dropout(self.self_attention(h, h, causal_mask))
        y = y + self.dropout(self.cross_attention(self.norm_cross(y), memory, memory_mask))
        return y + self.dropout(self.feedforward(self.norm_feedforward(y)))


def padding_to_additive(keep: torch.Tensor) -> torch.Tensor:
    """[batch, length] 1/0 keep-mask -> [batch, 1, 1, length] additive attention mask."""
    return ((1.0 - keep.to(torch.float32)) * NEGATIVE)[:, None, None, :]


class Seq2SeqTransformer(nn.Module):
    """Shared source/target vocabulary with one embedding matrix tied to the output projection
    (fewer parameters to learn from ~20k sentence pairs; German and English share many pieces)."""

    def __init__(self, shape: Seq2SeqShape):
        super().__init__()
        self.shape = shape
        self.embedding = nn.Embedding(shape.vocab_size, shape.d_model, padding_idx=shape.pad_id)
        self.positions = nn.Embedding(shape.max_positions, shape.d_model)
        self.encoder_layers = nn.ModuleList(_EncoderLayer(shape) for _ in range(shape.encoder_layers))
        self.decoder_layers = nn.ModuleList(_DecoderLayer(shape) for _ in range(shape.decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(shape.d_model), nn.LayerNorm(shape.d_model)
        self.dropout = nn.Dropout(shape.dropout)
        self.scale = math.sqrt(shape.d_model)
        nn.init.normal_(self.embedding.weight, std=shape.d_model ** -0.5)
        nn.init.normal_(self.positions.weight, std=0.02)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.dropout(self.embedding(ids) * self.scale + self.positions(positions))

    def encode(self, source_ids: torch.Tensor) -> torch.Tensor:
        source_mask = padding_to_additive(source_ids != self.shape.pad_id)
        x = self._embed(source_ids)
        for layer in self.encoder_layers:
            x = layer(x, source_mask)
        return self.encoder_norm(x)

    def decode(self, target_ids: torch.Tensor, memory: torch.Tensor, memory_keep: torch.Tensor) -> torch.Tensor:
        """Logits for every target position; ``memory_keep`` is the source's 1/0 padding mask."""
        length = target_ids.shape[1]
        causal = torch.triu(torch.full((length, length), NEGATIVE, device=target_ids.device), diagonal=1)
        memory_mask = padding_to_additive(memory_keep)
        y = self._embed(target_ids)
        for layer in self.decoder_layers:
            y = layer(y, memory, causal, memory_mask)
        return self.decoder_norm(y) @ self.embedding.weight.T

    def forward(self, source_ids: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        return self.decode(target_in, self.encode(source_ids), (source_ids != self.shape.pad_id).long())


class EncoderGraph(nn.Module):
    """Exported as ``encoder``: (src_ids int64 [batch, src_len]) -> memory [batch, src_len, d]."""

    def __init__(self, model: Seq2SeqTransformer):
        super().__init__()
        self.model = model

    def forward(self, src_ids: torch.Tensor) -> torch.Tensor:
        return self.model.encode(src_ids)


class DecoderStepGraph(nn.Module):
    """Exported as ``decoder_step``: (tgt_prefix int64 [batch, t], memory, memory_mask int64
    [batch, src_len]) -> next_logits [batch, vocab] for the token after the prefix."""

    def __init__(self, model: Seq2SeqTransformer):
        super().__init__()
        self.model = model

    def forward(self, tgt_prefix: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        return self.model.decode(tgt_prefix, memory, memory_mask)[:, -1, :]
