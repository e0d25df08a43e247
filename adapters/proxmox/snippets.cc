#include "adapters/proxmox/snippets.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>

#include "events/digest.h"

namespace agentlab::proxmox {

namespace {

constexpr char kHex[] = "0123456789abcdef";

Error errno_error(const std::string& what, int err) {
  return Error(ErrorCode::io_error, what + ": " + strerror(err), err);
}

// mkdir -p with mode 0755 for the parts that are missing.
int make_dirs(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
  size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    if (int rc = make_dirs(dir.substr(0, slash)); rc != 0) return rc;
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return errno;
  return 0;
}

// A queued piece of file work: `work` runs on a pool thread, `after` on the loop thread.
struct FileJob {
  uv_work_t req{};
  std::function<void()> work;
  std::function<void()> after;

  static void queue(uv_loop_t* loop, std::function<void()> work, std::function<void()> after) {
    auto* job = new FileJob;
    job->work = std::move(work);
    job->after = std::move(after);
    job->req.data = job;
    int rc = uv_queue_work(
        loop, &job->req, [](uv_work_t* r) { static_cast<FileJob*>(r->data)->work(); },
        [](uv_work_t* r, int) {
          auto* j = static_cast<FileJob*>(r->data);
          auto after = std::move(j->after);
          delete j;
          after();
        });
    if (rc != 0) {
      // The pool refused (cannot happen for a valid loop); run inline on the loop instead, still
      // asynchronously with respect to the caller by way of a zero timer.
      auto* t = new uv_timer_t;
      job->req.data = nullptr;
      t->data = job;
      uv_timer_init(loop, t);
      uv_timer_start(
          t,
          [](uv_timer_t* tm) {
            auto* j = static_cast<FileJob*>(tm->data);
            j->work();
            auto after = std::move(j->after);
            delete j;
            uv_close(reinterpret_cast<uv_handle_t*>(tm),
                     [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
            after();
          },
          0, 0);
    }
  }
};

std::optional<std::string> path_from_ref(const SnippetOptions& o, const engine::SnippetRef& ref) {
  std::string file;
  if (!ref.path.empty()) {
    size_t slash = ref.path.find_last_of('/');
    std::string dir = slash == std::string::npos ? "" : ref.path.substr(0, slash);
    std::string want = o.dir;
    while (want.size() > 1 && want.back() == '/') want.pop_back();
    if (dir != want) return std::nullopt;
    file = ref.path.substr(slash + 1);
  } else {
    std::string prefix = o.storage + ":snippets/";
    if (ref.ref.rfind(prefix, 0) != 0) return std::nullopt;
    file = ref.ref.substr(prefix.size());
  }
  if (!is_snippet_file_name(file)) return std::nullopt;
  std::string dir = o.dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir + "/" + file;
}

}  // namespace

std::string snippet_file_name(int vmid, const uint8_t random8[8]) {
  std::string name = "agentlab-" + std::to_string(vmid) + "-";
  for (int i = 0; i < 8; ++i) {
    name += kHex[random8[i] >> 4];
    name += kHex[random8[i] & 15];
  }
  return name + ".yaml";
}

bool is_snippet_file_name(std::string_view name) {
  constexpr std::string_view kPrefix = "agentlab-", kSuffix = ".yaml";
  if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) return false;
  std::string_view mid = name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  size_t dash = mid.find('-');
  if (dash == 0 || dash == std::string_view::npos || mid.size() - dash - 1 != 16) return false;
  for (size_t i = 0; i < mid.size(); ++i) {
    char c = mid[i];
    if (i < dash ? !(c >= '0' && c <= '9')
                 : i > dash && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

SnippetStore::SnippetStore(uv_loop_t* loop, SnippetOptions options)
    : loop_(loop), options_(std::move(options)) {
  while (options_.dir.size() > 1 && options_.dir.back() == '/') options_.dir.pop_back();
}

void SnippetStore::write(const engine::SnippetSpec& spec, engine::Done<engine::SnippetRef> done) {
  auto result = std::make_shared<Result<engine::SnippetRef>>();
  if (spec.vmid <= 0) {
    *result = fail(ErrorCode::invalid_argument, "snippet: vmid must be greater than zero");
  } else if (spec.content.empty()) {
    *result = fail(ErrorCode::invalid_argument, "snippet: content is empty");
  }
  bool rejected = !result->has_value();
  FileJob::queue(
      loop_,
      [result, rejected, spec, o = options_] {
        if (rejected) return;
        if (int rc = make_dirs(o.dir); rc != 0) {
          *result = std::unexpected(errno_error("create snippets dir " + o.dir, rc));
          return;
        }
        for (int attempt = 0; attempt < 5; ++attempt) {
          uint8_t rnd[8];
          if (o.random) {
            o.random(rnd, sizeof rnd);
          } else {
            events::fill_random(rnd);
          }
          std::string file = snippet_file_name(spec.vmid, rnd);
          std::string path = o.dir + "/" + file;
          int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
          if (fd < 0) {
            if (errno == EEXIST) continue;
            *result = std::unexpected(errno_error("create snippet " + path, errno));
            return;
          }
          size_t off = 0;
          while (off < spec.content.size()) {
            ssize_t n = ::write(fd, spec.content.data() + off, spec.content.size() - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
              int err = n < 0 ? errno : EIO;
              ::close(fd);
              ::unlink(path.c_str());
              *result = std::unexpected(errno_error("write snippet " + path, err));
              return;
            }
            off += static_cast<size_t>(n);
          }
          if (::close(fd) != 0) {
            int err = errno;
            ::unlink(path.c_str());
            *result = std::unexpected(errno_error("close snippet " + path, err));
            return;
          }
          *result = engine::SnippetRef{o.storage + ":snippets/" + file, path};
          return;
        }
        *result = fail(ErrorCode::conflict, "snippet: unable to create a unique file name");
      },
      [result, done = std::move(done)] { done(std::move(*result)); });
}

void SnippetStore::remove(const engine::SnippetRef& ref, engine::Done<void> done) {
  auto path = path_from_ref(options_, ref);
  auto result = std::make_shared<Result<void>>();
  if (!path) {
    *result = fail(ErrorCode::invalid_argument,
                   "snippet: refusing to remove " + (ref.path.empty() ? ref.ref : ref.path) +
                       " (not an agentlab snippet in " + options_.dir + ")");
  }
  FileJob::queue(
      loop_,
      [result, path] {
        if (!path) return;
        if (::unlink(path->c_str()) != 0 && errno != ENOENT) {
          *result = std::unexpected(errno_error("remove snippet " + *path, errno));
        }
      },
      [result, done = std::move(done)] { done(std::move(*result)); });
}

}  // namespace agentlab::proxmox
