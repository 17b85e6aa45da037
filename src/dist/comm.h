// Internal: the transport under attn::dist. The process group's checks and
// waiting live in process_group.cpp; the calls that move bytes are
// implemented once over MPI (comm_mpi.cpp) and once as a stub that says attn
// was built without MPI (comm_none.cpp); CMake compiles one of the two.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attn/tensor.h"

namespace attn::dist::detail {

enum class Type { F32, F64, I64, Byte };
enum class Op { Sum, Max };

struct Group {
  int rank = 0, size = 1;
  double timeout = 300.0;  // seconds
  // Set when an operation timed out or failed: the transport's state is
  // unknown, so every later call throws instead of mismatching messages.
  bool broken = false;
  std::string why_broken;
  int64_t collectives = 0;  // started so far: numbers each one's messages apart
};

// One operation in flight. `handle` is the transport's (an MPI_Request).
struct Request {
  std::shared_ptr<Group> group;
  std::string op;              // "all_reduce", ... (for messages)
  void* handle = nullptr;
  bool done = false;
  std::vector<Tensor> keep;    // the buffers the operation reads or writes
  std::function<void()> then;  // applied once after completion (a Mean's division)
  // An operation built from several transport calls (the ring all-reduce):
  // drives its parts, true when all is done. Null for a single call.
  std::function<bool()> advance;
  ~Request();                  // frees the handle (comm_*.cpp)
};

bool transport_available();
// The world group; `timeout` as InitOptions. Throws without a transport.
std::shared_ptr<Group> transport_init(double timeout);

// Non-blocking starts. Counts are elements of `type` (bytes for Byte); each
// fills r.handle or throws attn::Error naming r.op.
void start_broadcast(Request& r, void* buf, int64_t bytes, int root);
void start_all_gather(Request& r, const void* send, void* recv, int64_t bytes_per_rank);
void start_reduce_scatter(Request& r, const void* send, void* recv, int64_t count_per_rank, Type type, Op op);
// Point to point; `internal`: on attn's own communicator (the parts of
// collectives), apart from the user's send/recv and their tags.
void start_send(Request& r, const void* buf, int64_t bytes, int dst, int tag, bool internal = false);
void start_recv(Request& r, void* buf, int64_t bytes, int src, int tag, bool internal = false);
// The largest tag the transport accepts.
int max_tag();
void start_barrier(Request& r);
// Whether r has completed (drives the transport's progress); throws on failure.
bool test(Request& r);

}  // namespace attn::dist::detail
