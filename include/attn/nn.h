// attn::nn: modules with PyTorch's names, options, defaults and state_dict keys.
#pragma once

#include "attn/nn/attention_layers.h"
#include "attn/nn/graph_attention.h"
#include "attn/nn/init.h"
#include "attn/nn/layers.h"
#include "attn/nn/module.h"
#include "attn/nn/multihead_attention.h"
#include "attn/nn/rnn.h"
#include "attn/nn/transformer.h"
