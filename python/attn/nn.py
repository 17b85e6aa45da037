"""attn's modules, constructed with torch.nn's argument names.

A module's state_dict() gives views of its tensors; load_state_dict() copies
from a dict of attn tensors, NumPy arrays or torch tensors, so the
state_dict() of the torch module of the same name loads as it is.
"""
from ._attn._nn import (GRU, LSTM, RNN, AdditiveAttention, AttentionPooling, CosineAttention, Embedding,
                        GATConv, GATv2Conv, LayerNorm, Linear, LocalitySelfAttention, LuongAttention, Module,
                        MultiheadAttention, RelativeMultiheadAttention, RotaryEmbedding, ShiftedPatchTokenization,
                        T5RelativePositionBias, Transformer, TransformerDecoder, TransformerDecoderLayer,
                        TransformerEncoder, TransformerEncoderLayer)

__all__ = ["GRU", "LSTM", "RNN", "AdditiveAttention", "AttentionPooling", "CosineAttention", "Embedding",
           "GATConv", "GATv2Conv", "LayerNorm", "Linear", "LocalitySelfAttention", "LuongAttention", "Module",
           "MultiheadAttention", "RelativeMultiheadAttention", "RotaryEmbedding", "ShiftedPatchTokenization",
           "T5RelativePositionBias", "Transformer", "TransformerDecoder", "TransformerDecoderLayer",
           "TransformerEncoder", "TransformerEncoderLayer"]
