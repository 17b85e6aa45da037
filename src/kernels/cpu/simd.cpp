// What the kernels run on: the SIMD target attn's own kernels were compiled
// for (Highway's static target, the best the compiler flags allow:
// -march=native with ATTN_NATIVE), and the kernel OpenBLAS chose at run time.
#include <cblas.h>

#include <hwy/highway.h>

#include "kernels/cpu/kernels.h"

namespace attn::kernels::cpu {

const char* simd_target() {
  // Highway's name, with the instruction set it stands for where the name does not say.
#if HWY_TARGET == HWY_AVX3_ZEN4
  return "AVX-512 (Highway AVX3_ZEN4)";
#elif HWY_TARGET == HWY_AVX3_DL
  return "AVX-512 (Highway AVX3_DL)";
#elif HWY_TARGET == HWY_AVX3
  return "AVX-512 (Highway AVX3)";
#elif HWY_TARGET == HWY_AVX2
  return "AVX2+FMA (Highway AVX2)";
#else
  return hwy::TargetName(HWY_TARGET);
#endif
}

const char* blas_core() { return openblas_get_corename(); }

}  // namespace attn::kernels::cpu
