#include "attn/threads.h"

#include <omp.h>

#include "attn/error.h"

namespace attn {

void set_num_threads(int n) {
  ATTN_CHECK(n >= 1, "set_num_threads: n must be >= 1, got ", n);
  omp_set_num_threads(n);  // BLAS stays single-threaded: attn tiles GEMMs over this pool
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace attn
