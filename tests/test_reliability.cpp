// Reliability: a checkpoint writer SIGKILLed at random moments never leaves
// a checkpoint that does not load intact; training the demo is
// bit-identical at 1 and 2 threads and across runs.
//
// The writer is this program re-executed with --checkpoint-writer PATH (a
// fresh process: nothing of the parent's thread pool is inherited).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <attn/attn.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "translate/translate.h"

namespace attn {
namespace {

std::string self_exe;

// Writes checkpoints of a 1 MB model forever, step k holding the value k in
// every parameter, starting after the step already on disk.
int run_writer(const std::string& path) {
  nn::Linear m(nn::LinearOptions(512, 512));
  int64_t step = 0;
  if (std::filesystem::exists(path)) step = std::stoll(io::read_safetensors(path).metadata.at("step"));
  for (;;) {
    ++step;
    {
      NoGradGuard ng;
      m.weight.fill_(static_cast<double>(step));
      m.bias.fill_(static_cast<double>(step));
    }
    optim::save_checkpoint(path, m, nullptr, step);
  }
}

// Loads path and checks it is one whole checkpoint; returns its step.
int64_t check_intact(const std::string& path) {
  nn::Linear m(nn::LinearOptions(512, 512));
  io::Metadata meta = optim::load_checkpoint(path, m);
  const int64_t step = std::stoll(meta.at("step"));
  EXPECT_TRUE(equal(m.weight, full({512, 512}, static_cast<double>(step)))) << "weights of step " << step;
  EXPECT_TRUE(equal(m.bias, full({512}, static_cast<double>(step)))) << "bias of step " << step;
  return step;
}

// Temporary files a save left beside `path` (a save cut short by a kill).
int remove_leftovers(const std::string& path) {
  const auto dir = std::filesystem::path(path).parent_path();
  const std::string stem = std::filesystem::path(path).filename().string() + ".tmp";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().rfind(stem, 0) == 0) n += std::filesystem::remove(e.path());
  return n;
}

TEST(CrashSafety, KilledMidSaveLeavesTheLastCheckpointIntact) {
  const std::string path = (std::filesystem::temp_directory_path() / "attn_crash_test.safetensors").string();
  std::filesystem::remove(path);
  remove_leftovers(path);
  std::mt19937_64 rng(7);
  int64_t last = 0, mid_save = 0;
  const int kRounds = 40;
  for (int round = 0; round < kRounds; ++round) {
    const auto before = std::filesystem::exists(path) ? std::filesystem::last_write_time(path)
                                                      : std::filesystem::file_time_type::min();
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      execl(self_exe.c_str(), self_exe.c_str(), "--checkpoint-writer", path.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    // Wait for this writer's first completed save (start-up takes longer
    // under the sanitizers), then kill it at a random moment of the saves
    // that follow.
    const auto start = std::chrono::steady_clock::now();
    while (!std::filesystem::exists(path) || std::filesystem::last_write_time(path) == before) {
      ASSERT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60)) << "the writer never saved";
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the writer ended on its own: " << status;
    const int64_t step = check_intact(path);
    EXPECT_GE(step, last) << "a checkpoint went back in time";
    last = step;
    mid_save += remove_leftovers(path) > 0;  // the kill cut a save short
  }
  std::printf("crash safety: %d kills, %lld of them in the middle of a save (a temporary file left), the "
              "checkpoint always intact and never older (last step %lld)\n",
              kRounds, static_cast<long long>(mid_save), static_cast<long long>(last));
  EXPECT_GT(mid_save, kRounds / 4);  // the kills did land while a checkpoint was being written
  std::filesystem::remove(path);
}

TEST(Determinism, DemoTrainingIsBitIdenticalAcrossThreadsAndRuns) {
  // The demo's model (translate's Transformer) for 300 steps: the saved
  // checkpoints (weights, optimizer state, step, generator) must be the same
  // bytes at 1 thread, at 2 threads, and in a second run at 2 threads.
  auto run = [](int threads, const std::string& name) {
    const int before = get_num_threads();
    set_num_threads(threads);
    apps::translate::Options o;
    o.steps = 300;
    o.eval_examples = 0;
    o.quiet = true;
    o.checkpoint = (std::filesystem::temp_directory_path() / name).string();
    apps::translate::train(o);
    set_num_threads(before);
    io::SafetensorsFile f = io::read_safetensors(o.checkpoint);
    std::filesystem::remove(o.checkpoint);
    return f;
  };
  io::SafetensorsFile a = run(1, "attn_det_1.safetensors"), b = run(2, "attn_det_2.safetensors"),
                      c = run(2, "attn_det_3.safetensors");
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  int64_t compared = 0;
  for (const auto& [name, t] : a.tensors) {
    EXPECT_TRUE(equal(t, b.tensors.at(name))) << name << " differs between 1 and 2 threads";
    EXPECT_TRUE(equal(t, c.tensors.at(name))) << name << " differs between two runs";
    compared += t.numel();
  }
  EXPECT_EQ(a.metadata, c.metadata);
  std::printf("determinism: %zu tensors (%lld values) bit-identical at 1 and 2 threads and across runs\n",
              a.tensors.size(), static_cast<long long>(compared));
}

}  // namespace
}  // namespace attn

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--checkpoint-writer") == 0) return attn::run_writer(argv[2]);
  attn::self_exe = std::filesystem::canonical("/proc/self/exe").string();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
