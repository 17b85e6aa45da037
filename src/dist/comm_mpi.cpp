// The transport over MPI: non-blocking MPI calls on MPI_COMM_WORLD with
// MPI_ERRORS_RETURN, so that a failure comes back as an attn::Error rather
// than aborting the job. MPI is initialised on the first init() and
// finalised at exit, unless an operation timed out (finalising would wait
// for the rank that is gone).
#include <mpi.h>

#include <climits>
#include <cstdlib>

#include "dist/comm.h"

namespace attn::dist::detail {

namespace {

struct Runtime {
  bool we_initialised = false;
  MPI_Comm internal = MPI_COMM_NULL;  // a duplicate of MPI_COMM_WORLD for the parts of collectives
  int max_tag = 0;
  std::shared_ptr<Group> world;  // held to the end, so that exit sees whether it broke
  ~Runtime() {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!we_initialised || !init || fin) return;
    if (world && world->broken) return;
    if (internal != MPI_COMM_NULL) MPI_Comm_free(&internal);
    MPI_Finalize();
  }
};
Runtime g_runtime;

std::string mpi_error(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(code, buf, &n);
  return std::string(buf, static_cast<size_t>(n));
}

void check(int code, const Request& r, const char* call) {
  if (code == MPI_SUCCESS) return;
  r.group->broken = true;
  r.group->why_broken = r.op + " failed in " + call + ": " + mpi_error(code);
  throw Error("attn::dist::" + r.op + ": " + call + " failed on rank " + std::to_string(r.group->rank) + ": " +
              mpi_error(code));
}

int count_of(const Request& r, int64_t n) {
  ATTN_CHECK(n >= 0 && n <= INT_MAX, "attn::dist::", r.op, ": ", n, " elements in one message; MPI counts stop at ",
             INT_MAX, " (split the tensor)");
  return static_cast<int>(n);
}

MPI_Datatype mpi_type(Type t) {
  switch (t) {
    case Type::F32: return MPI_FLOAT;
    case Type::F64: return MPI_DOUBLE;
    case Type::I64: return MPI_INT64_T;
    case Type::Byte: return MPI_BYTE;
  }
  return MPI_BYTE;
}

MPI_Op mpi_op(Op op) { return op == Op::Max ? MPI_MAX : MPI_SUM; }

MPI_Request* handle(Request& r) {
  if (!r.handle) r.handle = new MPI_Request(MPI_REQUEST_NULL);
  return static_cast<MPI_Request*>(r.handle);
}

}  // namespace

Request::~Request() {
  auto* h = static_cast<MPI_Request*>(handle);
  // A request still in flight belongs to a broken group (every other path
  // waits): MPI cannot cancel a collective, so it is left to MPI.
  delete h;
}

bool transport_available() { return true; }

std::shared_ptr<Group> transport_init(double timeout) {
  if (g_runtime.world) return g_runtime.world;
  int init = 0;
  MPI_Initialized(&init);
  if (!init) {
    int provided = 0;
    const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    ATTN_CHECK(rc == MPI_SUCCESS, "attn::dist::init: MPI_Init_thread failed: ", mpi_error(rc));
    g_runtime.we_initialised = true;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_dup(MPI_COMM_WORLD, &g_runtime.internal);
  MPI_Comm_set_errhandler(g_runtime.internal, MPI_ERRORS_RETURN);
  int* ub = nullptr;
  int flag = 0;
  MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag);
  g_runtime.max_tag = flag && ub ? *ub : 32767;  // the standard's guaranteed minimum
  auto g = std::make_shared<Group>();
  MPI_Comm_rank(MPI_COMM_WORLD, &g->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g->size);
  g->timeout = timeout;
  g_runtime.world = g;
  return g;
}

void start_broadcast(Request& r, void* buf, int64_t bytes, int root) {
  check(MPI_Ibcast(buf, count_of(r, bytes), MPI_BYTE, root, MPI_COMM_WORLD, handle(r)), r, "MPI_Ibcast");
}

void start_all_gather(Request& r, const void* send, void* recv, int64_t bytes_per_rank) {
  const int n = count_of(r, bytes_per_rank);
  check(MPI_Iallgather(send, n, MPI_BYTE, recv, n, MPI_BYTE, MPI_COMM_WORLD, handle(r)), r, "MPI_Iallgather");
}

void start_reduce_scatter(Request& r, const void* send, void* recv, int64_t count_per_rank, Type type, Op op) {
  check(MPI_Ireduce_scatter_block(send, recv, count_of(r, count_per_rank), mpi_type(type), mpi_op(op),
                                  MPI_COMM_WORLD, handle(r)),
        r, "MPI_Ireduce_scatter_block");
}

void start_send(Request& r, const void* buf, int64_t bytes, int dst, int tag, bool internal) {
  check(MPI_Isend(buf, count_of(r, bytes), MPI_BYTE, dst, tag, internal ? g_runtime.internal : MPI_COMM_WORLD,
                  handle(r)),
        r, "MPI_Isend");
}

void start_recv(Request& r, void* buf, int64_t bytes, int src, int tag, bool internal) {
  check(MPI_Irecv(buf, count_of(r, bytes), MPI_BYTE, src, tag, internal ? g_runtime.internal : MPI_COMM_WORLD,
                  handle(r)),
        r, "MPI_Irecv");
}

int max_tag() { return g_runtime.max_tag; }

void start_barrier(Request& r) { check(MPI_Ibarrier(MPI_COMM_WORLD, handle(r)), r, "MPI_Ibarrier"); }

bool test(Request& r) {
  int flag = 0;
  check(MPI_Test(handle(r), &flag, MPI_STATUS_IGNORE), r, "MPI_Test");
  return flag != 0;
}

}  // namespace attn::dist::detail
