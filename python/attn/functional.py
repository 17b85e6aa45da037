"""attn's functional ops, with torch.nn.functional's names and arguments.

scaled_dot_product_attention takes PyTorch's arguments (attn_mask: bool,
True = attend, or float, added to the scores; dropout_p; is_causal; scale;
enable_gqa) and attn's further options as keywords: window=(left, right),
global_tokens, stride, alibi_slopes, softcap, key_lengths,
causal_align='top_left'|'bottom_right', generator, return_lse.
"""
from ._attn._functional import (alibi_slopes, cross_entropy, dropout, gelu, layer_norm, linear,
                                linear_attention, log_softmax, mse_loss, relu, rotary_embedding,
                                scaled_dot_product_attention, scaled_dot_product_attention_reference,
                                scaled_dot_product_attention_weights, softmax)

__all__ = ["alibi_slopes", "cross_entropy", "dropout", "gelu", "layer_norm", "linear", "linear_attention",
           "log_softmax", "mse_loss", "relu", "rotary_embedding", "scaled_dot_product_attention",
           "scaled_dot_product_attention_reference", "scaled_dot_product_attention_weights", "softmax"]
