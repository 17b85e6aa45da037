// A job in which one rank fails: `kill` makes rank 1 die (SIGKILL) and
// `hang` makes it stop answering, before an all_reduce that rank 0 waits in.
// Rank 0 must leave with an attn::Error (printed, exit status 3) within the
// group's timeout, or be stopped by the launcher; never wait forever.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>

#include "attn/attn.h"
#include "attn/dist.h"

int main(int argc, char** argv) {
  if (argc != 2 || (std::strcmp(argv[1], "kill") != 0 && std::strcmp(argv[1], "hang") != 0)) {
    std::fprintf(stderr, "usage: dist_failure kill|hang\n");
    return 2;
  }
  try {
    auto pg = attn::dist::init(attn::dist::InitOptions().timeout(5));
    attn::Tensor t = attn::ones({1000});
    pg.all_reduce(t);  // everyone is alive here
    if (pg.rank() == 1) {
      if (argv[1][0] == 'k') std::raise(SIGKILL);
      std::this_thread::sleep_for(std::chrono::hours(1));
    }
    pg.all_reduce(t);
    std::printf("rank %d: the all_reduce returned without rank 1\n", pg.rank());
    return 1;
  } catch (const attn::Error& e) {
    std::printf("attn::Error: %s\n", e.what());
    std::fflush(stdout);
    return 3;
  }
}
