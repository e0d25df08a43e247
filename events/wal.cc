// The log's write-ahead segments; the format and the reuse rule are in events/wal.h.
#include "events/wal.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "events/digest.h"

namespace agentlab::events {

namespace {

using namespace wal_layout;

constexpr char kFileMagic[8] = {'A', 'G', 'L', 'A', 'B', 'W', 'A', 'L'};
constexpr uint32_t kFileVersion = 1;

void put_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_le64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_le32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t get_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::unexpected<Error> sys_fail(int e, std::string what) {
  return fail(code_for_errno(e), fmt::format("{}: {}", what, std::strerror(e)), e);
}

// The first 8 bytes of SHA-256(header[0..24) || body).
void digest_of(const uint8_t* header, const uint8_t* body, size_t body_len, uint8_t out[8]) {
  Sha256 sha;
  sha.update(header, 24);
  sha.update(body, body_len);
  std::memcpy(out, sha.finish().data(), 8);
}

Result<void> write_all(int fd, const uint8_t* p, size_t n, uint64_t off) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      return sys_fail(errno, "write-ahead log write");
    }
    p += w;
    n -= static_cast<size_t>(w);
    off += static_cast<uint64_t>(w);
  }
  return {};
}

Result<std::vector<uint8_t>> read_file(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return sys_fail(errno, "stat write-ahead log");
  std::vector<uint8_t> buf(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t r = ::pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return sys_fail(errno, "read write-ahead log");
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  buf.resize(got);
  return buf;
}

// Creates a zero-filled segment under a temp name and renames it into place, so a crash never
// leaves a short segment under the real name.
Result<void> create_segment(const std::string& dir, const std::string& path, int index,
                            uint64_t bytes) {
  const std::string tmp = path + ".creating";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return sys_fail(errno, fmt::format("create {}", tmp));
  std::vector<uint8_t> chunk(1 << 20, 0);
  std::memcpy(chunk.data(), kFileMagic, 8);
  put_le32(chunk.data() + 8, kFileVersion);
  put_le32(chunk.data() + 12, static_cast<uint32_t>(index));
  put_le64(chunk.data() + 16, bytes);
  Result<void> r;
  for (uint64_t off = 0; off < bytes && r;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), bytes - off));
    r = write_all(fd, chunk.data(), n, off);
    if (off == 0) std::memset(chunk.data(), 0, kHeaderBytes);
    off += n;
  }
  if (r && ::fsync(fd) != 0) r = sys_fail(errno, fmt::format("fsync {}", tmp));
  ::close(fd);
  if (r && ::rename(tmp.c_str(), path.c_str()) != 0)
    r = sys_fail(errno, fmt::format("rename {}", tmp));
  if (!r) {
    ::unlink(tmp.c_str());
    return r;
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

struct Found {
  WalRecord record;
  int segment = 0;
  uint64_t end = 0;  // offset just past the record
};

// Every record of one segment up to the first that is not intact.
std::vector<Found> scan(const std::vector<uint8_t>& buf, int segment) {
  std::vector<Found> out;
  uint64_t off = kHeaderBytes;
  while (off + kRecordHeaderBytes <= buf.size()) {
    const uint8_t* h = buf.data() + off;
    if (get_le32(h) != kRecordMagic) break;
    const uint32_t body_len = get_le32(h + 4);
    const uint64_t first = get_le64(h + 8);
    const uint32_t count = get_le32(h + 16);
    if (count == 0 || first == 0 || body_len % 8 != 0 ||
        body_len > buf.size() - off - kRecordHeaderBytes)
      break;
    const uint8_t* body = h + kRecordHeaderBytes;
    uint8_t d[8];
    digest_of(h, body, body_len, d);
    if (std::memcmp(d, h + 24, 8) != 0) break;
    Found f;
    f.segment = segment;
    f.record.first_seq = first;
    uint64_t p = 0;
    bool ok = true;
    for (uint32_t i = 0; i < count && ok; ++i) {
      if (p + 4 > body_len) {
        ok = false;
        break;
      }
      const uint32_t len = get_le32(body + p);
      p += 4;
      if (len > body_len - p) {
        ok = false;
        break;
      }
      f.record.events.emplace_back(body + p, body + p + len);
      p += len;
    }
    if (!ok) break;
    off += kRecordHeaderBytes + body_len;
    f.end = off;
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace

uint64_t Wal::record_bytes(std::span<const std::vector<uint8_t>> events) {
  uint64_t body = 0;
  for (const auto& e : events) body += 4 + e.size();
  return kRecordHeaderBytes + ((body + 7) & ~uint64_t{7});
}

Result<std::unique_ptr<Wal>> Wal::open(const WalOptions& options, uint64_t lmdb_last_seq,
                                       std::vector<WalRecord>* pending) {
  std::unique_ptr<Wal> wal(new Wal());
  wal->dir_ = options.dir;
  wal->durable_ = options.durable;
  wal->segment_bytes_ = std::max<uint64_t>(options.segment_bytes, kHeaderBytes + 64 * 1024);
  std::vector<Found> found;
  for (int i = 0; i < 2; ++i) {
    const std::string path = fmt::format("{}/wal.{}", options.dir, i);
    if (!options.read_only) ::unlink((path + ".creating").c_str());
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      if (errno != ENOENT) return sys_fail(errno, fmt::format("stat {}", path));
      if (options.read_only) continue;
      if (auto c = create_segment(options.dir, path, i, wal->segment_bytes_); !c)
        return std::unexpected(c.error());
    }
    int fd = ::open(path.c_str(), (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) return sys_fail(errno, fmt::format("open {}", path));
    wal->seg_[i].fd = fd;
    auto buf = read_file(fd);
    if (!buf) return std::unexpected(buf.error());
    if (buf->size() < kHeaderBytes || std::memcmp(buf->data(), kFileMagic, 8) != 0)
      return fail(ErrorCode::corrupt,
                  fmt::format("{} is not an agentlab write-ahead log segment", path));
    if (get_le32(buf->data() + 8) > kFileVersion)
      return fail(ErrorCode::incompatible,
                  fmt::format("{} has write-ahead log format {}; this binary reads format {}", path,
                              get_le32(buf->data() + 8), kFileVersion));
    // A segment written with another size keeps its own.
    wal->segment_bytes_ = std::min<uint64_t>(wal->segment_bytes_, buf->size());
    auto records = scan(*buf, i);
    wal->seg_[i].offset = records.empty() ? kHeaderBytes : records.back().end;
    for (auto& r : records) {
      wal->seg_[i].max_seq = std::max(wal->seg_[i].max_seq, r.record.last_seq());
      found.push_back(std::move(r));
    }
  }
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.record.first_seq < b.record.first_seq; });
  uint64_t next = lmdb_last_seq + 1;
  int active = 0;
  for (auto& f : found) {
    if (f.record.last_seq() < next) continue;  // already in LMDB
    if (f.record.first_seq != next) {
      // Records are acknowledged in seq order and each is written after the one before it,
      // so nothing past a gap was acknowledged.
      spdlog::warn("component=log event=wal_gap dir={} expected_seq={} found_seq={}", wal->dir_,
                   next, f.record.first_seq);
      break;
    }
    next = f.record.last_seq() + 1;
    active = f.segment;
    if (pending != nullptr) pending->push_back(std::move(f.record));
  }
  wal->active_ = active;
  wal->last_written_ = next - 1;
  return wal;
}

Wal::~Wal() {
  for (auto& s : seg_)
    if (s.fd >= 0) ::close(s.fd);
}

Result<Wal::Placed> Wal::write(uint64_t first_seq, std::span<const std::vector<uint8_t>> events,
                               uint64_t applied_seq) {
  const uint64_t size = record_bytes(events);
  if (size > segment_bytes_ - kHeaderBytes)
    return fail(ErrorCode::too_large,
                fmt::format("a commit of {} bytes does not fit a {}-byte write-ahead segment", size,
                            segment_bytes_));
  if (applied_seq >= last_written_) {
    // Everything written is durable in LMDB: start over where the blocks are warm.
    seg_[active_].offset = kHeaderBytes;
    seg_[active_].max_seq = 0;
  }
  if (seg_[active_].offset + size > segment_bytes_) {
    Segment& other = seg_[1 - active_];
    if (other.max_seq > applied_seq) return Placed::full;
    other.offset = kHeaderBytes;
    other.max_seq = 0;
    active_ = 1 - active_;
  }
  Segment& s = seg_[active_];

  std::vector<uint8_t> buf(size, 0);
  uint8_t* h = buf.data();
  uint8_t* body = h + kRecordHeaderBytes;
  uint64_t p = 0;
  for (const auto& e : events) {
    put_le32(body + p, static_cast<uint32_t>(e.size()));
    std::memcpy(body + p + 4, e.data(), e.size());
    p += 4 + e.size();
  }
  const uint32_t body_len = static_cast<uint32_t>(size - kRecordHeaderBytes);
  put_le32(h, kRecordMagic);
  put_le32(h + 4, body_len);
  put_le64(h + 8, first_seq);
  put_le32(h + 16, static_cast<uint32_t>(events.size()));
  put_le32(h + 20, 0);
  digest_of(h, body, body_len, h + 24);

  auto written = write_all(s.fd, buf.data(), buf.size(), s.offset);
  if (written && durable_ && ::fdatasync(s.fd) != 0)
    written = sys_fail(errno, "write-ahead log fdatasync");
  if (!written) {
    // Not acknowledged: make sure recovery cannot find it, whatever reached the disk.
    const uint8_t zeros[kRecordHeaderBytes] = {};
    if (write_all(s.fd, zeros, sizeof zeros, s.offset) && durable_) ::fdatasync(s.fd);
    return std::unexpected(written.error());
  }
  s.offset += size;
  s.max_seq = first_seq + events.size() - 1;
  last_written_ = s.max_seq;
  return Placed::written;
}

}  // namespace agentlab::events
