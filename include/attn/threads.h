// The one thread pool of attn (OpenMP). Kernels parallelise through it; BLAS
// always runs single-threaded (attn splits each product into tiles fixed by
// its shape, so results are bit-identical at any thread count), and every
// worker runs with flush-to-zero and denormals-are-zero set.
#pragma once

namespace attn {

// Number of threads attn's kernels and BLAS use (>= 1).
void set_num_threads(int n);
int get_num_threads();

// What the kernels run on, as `attn bench` reports it: the SIMD target attn's
// own kernels were compiled for ("AVX-512 (Highway AVX3)", "AVX2+FMA (Highway
// AVX2)", or Highway's name of another target), and the kernel OpenBLAS
// picked for this CPU at run time ("Haswell", "SkylakeX", "Zen", ...).
const char* simd_target();
const char* blas_core();

}  // namespace attn
