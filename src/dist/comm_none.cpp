// The transport when attn is built without MPI: every entry point says so.
#include "dist/comm.h"

namespace attn::dist::detail {

namespace {
[[noreturn]] void no_mpi(const std::string& op) {
  throw Error("attn::dist::" + op + ": attn was built without MPI (install libopenmpi-dev and configure "
              "with -DATTN_WITH_MPI=ON)");
}
}  // namespace

Request::~Request() = default;
bool transport_available() { return false; }
std::shared_ptr<Group> transport_init(double) { no_mpi("init"); }
void start_broadcast(Request& r, void*, int64_t, int) { no_mpi(r.op); }
void start_all_gather(Request& r, const void*, void*, int64_t) { no_mpi(r.op); }
void start_reduce_scatter(Request& r, const void*, void*, int64_t, Type, Op) { no_mpi(r.op); }
void start_send(Request& r, const void*, int64_t, int, int, bool) { no_mpi(r.op); }
void start_recv(Request& r, void*, int64_t, int, int, bool) { no_mpi(r.op); }
int max_tag() { return 0; }
void start_barrier(Request& r) { no_mpi(r.op); }
bool test(Request& r) { no_mpi(r.op); }

}  // namespace attn::dist::detail
