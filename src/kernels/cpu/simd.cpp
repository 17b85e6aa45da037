// What the kernels run on: the SIMD target the fused attention's parts run
// (compiled for every target Highway can build here and chosen at run time,
// the best this CPU supports), the static target the other kernels were
// compiled for (the best the compiler flags allow: -march=native with
// ATTN_NATIVE), and the kernel OpenBLAS chose at run time.
#include <cblas.h>

#include <hwy/highway.h>
#include <hwy/targets.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/cpu/kernels.h"

namespace attn::kernels::cpu {

namespace {

// Highway's name, with the instruction set it stands for where the name does not say.
std::string target_name(int64_t t) {
  const std::string hwy_name = hwy::TargetName(t);
  bool avx512 = t == HWY_AVX3_DL || t == HWY_AVX3;
#ifdef HWY_AVX3_ZEN4  // newer Highway versions
  avx512 = avx512 || t == HWY_AVX3_ZEN4;
#endif
  if (avx512) return "AVX-512 (Highway " + hwy_name + ")";
  if (t == HWY_AVX2) return "AVX2+FMA (Highway " + hwy_name + ")";
  return hwy_name;
}

// The targets this CPU supports (after ATTN_SIMD), with Highway's dispatch
// choice set from them: SupportedTargets itself first sets that choice from
// every detected target, which would undo the cap.
int64_t supported_targets() {
  const int64_t t = hwy::SupportedTargets();
  hwy::GetChosenTarget().Update(t);
  return t;
}

}  // namespace

void choose_simd_target() {
  static const bool chosen = [] {
    // ATTN_SIMD caps the choice: the best target at or below the one named.
    const char* env = std::getenv("ATTN_SIMD");
    if (!env || !*env) return true;
    const struct {
      const char* name;
      int64_t target;
    } caps[] = {{"avx512", HWY_AVX3}, {"avx2", HWY_AVX2}, {"sse4", HWY_SSE4}};
    for (const auto& c : caps)
      if (std::strcmp(env, c.name) == 0) {
        const int64_t better = c.target - 1;  // every better target has a lower bit
        if ((supported_targets() & HWY_TARGETS & ~better) == 0)
          std::fprintf(stderr, "attn: ATTN_SIMD=%s: this build has no attention kernels at or below it (built "
                               "with ATTN_NATIVE for this CPU); ignored\n", env);
        else
          hwy::DisableTargets(better);
        supported_targets();
        return true;
      }
    std::fprintf(stderr, "attn: ATTN_SIMD=%s is not one of avx512, avx2, sse4; ignored\n", env);
    return true;
  }();
  (void)chosen;
}

const char* simd_target() {
  choose_simd_target();
  static const std::string name = [] {
    const int64_t targets = supported_targets() & HWY_TARGETS;
    const int64_t best = targets & -targets;  // Highway numbers better targets lower
    std::string s = target_name(best);
    if (best != HWY_STATIC_TARGET) s += " at run time, other kernels " + target_name(HWY_STATIC_TARGET);
    return s;
  }();
  return name.c_str();
}

const char* blas_core() { return openblas_get_corename(); }

}  // namespace attn::kernels::cpu
