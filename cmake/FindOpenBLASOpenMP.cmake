# Finds the OpenMP build of OpenBLAS (Debian: libopenblas-openmp-dev). It
# installs beside the pthreads build in its own openblas-openmp folders and the
# system's default BLAS alternative stays pthreads, so look there explicitly.
# Sets OPENBLAS_OPENMP_LIBRARY and OPENBLAS_OPENMP_INCLUDE_DIR.
set(_attn_arch ${CMAKE_LIBRARY_ARCHITECTURE})
find_library(OPENBLAS_OPENMP_LIBRARY NAMES openblas
  PATHS /usr/lib/${_attn_arch}/openblas-openmp /usr/lib/openblas-openmp
  NO_DEFAULT_PATH)
find_path(OPENBLAS_OPENMP_INCLUDE_DIR cblas.h
  PATHS /usr/include/${_attn_arch}/openblas-openmp /usr/include/openblas-openmp
  NO_DEFAULT_PATH)
if(NOT OPENBLAS_OPENMP_LIBRARY OR NOT OPENBLAS_OPENMP_INCLUDE_DIR)
  message(FATAL_ERROR "attn needs the OpenMP build of OpenBLAS: apt-get install libopenblas-openmp-dev "
                      "(or run scripts/setup.sh)")
endif()
message(STATUS "OpenBLAS (OpenMP build): ${OPENBLAS_OPENMP_LIBRARY}")
