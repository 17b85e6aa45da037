// Shows that ThreadSanitizer sees the OpenMP runtime's synchronisation in the
// ThreadSanitizer build, so that silence over the kernel tests means
// something: one thread writes, a second reads after an OpenMP barrier (must
// pass), or with no barrier (argument "race": must be reported).
#include <omp.h>

#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  const bool race = argc > 1 && std::strcmp(argv[1], "race") == 0;
  static volatile int shared[2] = {0, 0};
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num();
    if (t == 0) shared[0] = 1;
    if (!race) {
#pragma omp barrier
    }
    if (t == 1) shared[1] = shared[0];
  }
  std::printf("threads saw %d\n", shared[1]);
  return 0;
}
