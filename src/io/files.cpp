// Mapping a checkpoint file read-only (copy-on-write), shared by the
// safetensors and PyTorch readers (see files.h).
#include "io/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "attn/error.h"
#include "attn/io.h"

namespace attn::io::files {

Mapped map_file(const std::string& path, std::string& error) {
  Mapped m;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = std::string("cannot open: ") + std::strerror(errno);
    return m;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    error = std::string("cannot stat: ") + std::strerror(errno);
    ::close(fd);
    return m;
  }
  if (!S_ISREG(st.st_mode)) {
    error = "not a regular file";
    ::close(fd);
    return m;
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return m;
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (p == MAP_FAILED) {
    error = std::string("cannot map: ") + std::strerror(err);
    return m;
  }
  m.data = static_cast<const char*>(p);
  m.size = size;
  m.owner = std::shared_ptr<void>(p, [size](void* q) { ::munmap(q, size); });
  return m;
}

void write_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts, const char* op) {
  // A temporary file beside the target, then rename: a crash leaves the old file.
  std::random_device rd;
  const std::string tmp = path + ".tmp" + std::to_string(::getpid()) + "_" + std::to_string(rd());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(std::string(op) + ": cannot create " + tmp + ": " + std::strerror(errno));
  for (auto [p, n] : parts) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd, c, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        const int err = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        throw Error(std::string(op) + ": writing " + path + " failed: " + std::strerror(err));
      }
      c += w;
      n -= static_cast<size_t>(w);
    }
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw Error(std::string(op) + ": flushing " + path + " failed: " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(std::string(op) + ": renaming " + tmp + " to " + path + " failed: " + std::strerror(err));
  }
}

}  // namespace attn::io::files

namespace attn::io {

void write_file(const std::string& path, std::string_view bytes) {
  files::write_atomic(path, {{bytes.data(), bytes.size()}}, "write_file");
}

}  // namespace attn::io
