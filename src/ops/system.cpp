// The public face of the kernels' machine report (attn/threads.h).
#include "attn/threads.h"
#include "kernels/cpu/kernels.h"

namespace attn {

const char* simd_target() { return kernels::cpu::simd_target(); }
const char* blas_core() { return kernels::cpu::blas_core(); }

}  // namespace attn
