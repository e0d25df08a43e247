#include "cli/agentlabd/file_stream.h"

#include <fcntl.h>

#include <memory>
#include <vector>

namespace agentlab::daemon {
namespace {

constexpr size_t kChunk = 256 * 1024;

struct FileStream : std::enable_shared_from_this<FileStream> {
  uv_loop_t* loop = nullptr;
  http::ResponseWriter writer;
  uv_file fd = -1;
  uint64_t size = 0;
  uint64_t offset = 0;
  std::vector<char> buffer;
  uv_fs_t req{};
  std::shared_ptr<FileStream> self;  // keeps the stream alive while a request is in flight

  void close_file() {
    if (fd >= 0) {
      uv_fs_t r;
      uv_fs_close(nullptr, &r, fd, nullptr);  // synchronous close: cheap, never blocks long
      uv_fs_req_cleanup(&r);
      fd = -1;
    }
  }

  void finish() {
    close_file();
    self.reset();
  }

  void read_next() {
    if (!writer.alive()) return finish();
    if (offset >= size) {
      writer.end();
      return finish();
    }
    size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, size - offset));
    buffer.resize(want);
    uv_buf_t buf = uv_buf_init(buffer.data(), static_cast<unsigned>(want));
    req.data = this;
    uv_fs_read(loop, &req, fd, &buf, 1, static_cast<int64_t>(offset), [](uv_fs_t* r) {
      auto* s = static_cast<FileStream*>(r->data);
      ssize_t n = r->result;
      uv_fs_req_cleanup(r);
      if (n <= 0) {
        // The file shrank or failed under us: the declared length cannot be met; the server
        // closes the connection instead of reusing it.
        s->writer.end();
        return s->finish();
      }
      s->offset += static_cast<uint64_t>(n);
      std::string chunk(s->buffer.data(), static_cast<size_t>(n));
      s->writer.write(std::move(chunk), [s](bool ok) {
        if (!ok) return s->finish();
        s->read_next();
      });
    });
  }
};

}  // namespace

void stream_file(uv_loop_t* loop, http::ResponseWriter writer, const std::string& path,
                 const std::string& content_type, http::HeaderList extra_headers) {
  uv_fs_t open_req;
  int fd = uv_fs_open(nullptr, &open_req, path.c_str(), O_RDONLY | O_CLOEXEC, 0, nullptr);
  uv_fs_req_cleanup(&open_req);
  if (fd < 0) {
    if (fd == UV_ENOENT)
      writer.error(404, "artifact file missing");
    else
      writer.error(500, "failed to open artifact");
    return;
  }
  uv_fs_t stat_req;
  int rc = uv_fs_fstat(nullptr, &stat_req, fd, nullptr);
  uint64_t size = stat_req.statbuf.st_size;
  uv_fs_req_cleanup(&stat_req);
  if (rc < 0) {
    uv_fs_t c;
    uv_fs_close(nullptr, &c, fd, nullptr);
    uv_fs_req_cleanup(&c);
    writer.error(500, "failed to stat artifact");
    return;
  }
  auto s = std::make_shared<FileStream>();
  s->loop = loop;
  s->writer = std::move(writer);
  s->fd = fd;
  s->size = size;
  s->self = s;
  s->writer.start(200, content_type, size, extra_headers);
  s->read_next();
}

}  // namespace agentlab::daemon
