// The umbrella header of attn: #include <attn/attn.h>.
#pragma once

#include "attn/attention.h"
#include "attn/autograd.h"
#include "attn/dtype.h"
#include "attn/error.h"
#include "attn/functional.h"
#include "attn/generator.h"
#include "attn/io.h"
#include "attn/models/swin_transformer.h"
#include "attn/models/vision_transformer.h"
#include "attn/data.h"
#include "attn/nn.h"
#include "attn/optim.h"
#include "attn/ops.h"
#include "attn/tensor.h"
#include "attn/threads.h"
#include "attn/version.h"
