// Mapping a checkpoint file read-only (copy-on-write), shared by the
// safetensors and PyTorch readers (see files.h).
#include "io/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

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

}  // namespace attn::io::files
