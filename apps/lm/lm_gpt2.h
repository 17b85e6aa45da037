// lm --arch gpt2: GPT-2 with GPT-2's tokenizer, saved as a Hugging Face
// directory (see lm_gpt2.cpp).
#pragma once

#include "common/app.h"

namespace attn::apps {

AppResult train_gpt2(const AppOptions& o);
AppResult eval_gpt2(const AppOptions& o);

}  // namespace attn::apps
