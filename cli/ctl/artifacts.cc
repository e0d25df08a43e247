#include "cli/ctl/artifacts.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace agentlab::ctl {
namespace {

using nlohmann::json;

std::string text(const json& a, const char* key) {
  return a.is_object() && a.contains(key) && a[key].is_string() ? a[key].get<std::string>() : "";
}

std::string base_name(const std::string& s) {
  const size_t slash = s.find_last_of("/\\");
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

std::string artifact_name(const json& a) {
  std::string name = text(a, "name");
  return name.empty() ? base_name(text(a, "path")) : name;
}

std::unexpected<Error> io_fail(const std::string& what, int err) {
  return fail(ErrorCode::io_error, what + ": " + std::strerror(err), err);
}

}  // namespace

Result<json> select_artifact(const json& list, const ArtifactSelector& sel,
                             const std::string& job_id) {
  if (!sel.path.empty() && !sel.name.empty())
    return fail(ErrorCode::invalid_argument, "path and name are mutually exclusive");
  if (sel.name.find_first_of("/\\") != std::string::npos)
    return fail(ErrorCode::invalid_argument, "artifact name must not contain path separators");
  const json empty = json::array();
  const json& artifacts =
      list.is_object() && list.contains("artifacts") && list["artifacts"].is_array()
          ? list["artifacts"]
          : empty;
  if (artifacts.empty()) return fail(ErrorCode::not_found, "no artifacts found for job " + job_id);
  if (!sel.path.empty()) {
    for (auto it = artifacts.rbegin(); it != artifacts.rend(); ++it)
      if (text(*it, "path") == sel.path) return *it;
    return fail(ErrorCode::not_found, "artifact path \"" + sel.path + "\" not found");
  }
  if (!sel.name.empty()) {
    for (auto it = artifacts.rbegin(); it != artifacts.rend(); ++it)
      if (artifact_name(*it) == sel.name) return *it;
    return fail(ErrorCode::not_found, "artifact name \"" + sel.name + "\" not found");
  }
  if (sel.bundle || !sel.latest) {
    for (auto it = artifacts.rbegin(); it != artifacts.rend(); ++it)
      if (artifact_name(*it) == kBundleName) return *it;
  }
  return artifacts.back();
}

Result<std::filesystem::path> resolve_out_path(const std::string& out, const json& artifact) {
  namespace fs = std::filesystem;
  std::string name = base_name(artifact_name(artifact));
  if (name.empty() || name == "." || name == "..") name = "artifact";
  std::error_code ec;
  if (out.empty()) return fs::path(".") / name;
  if (out.back() == '/') {
    fs::create_directories(out, ec);
    if (ec) return fail(ErrorCode::io_error, "create directory " + out + ": " + ec.message());
    ::chmod(out.c_str(), 0750);
    return fs::path(out) / name;
  }
  if (fs::is_directory(out, ec)) return fs::path(out) / name;
  const fs::path target(out);
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec)
      return fail(ErrorCode::io_error,
                  "create directory " + target.parent_path().string() + ": " + ec.message());
  }
  return target;
}

FileSink::FileSink(std::filesystem::path target) : target_(std::move(target)) {
  temp_ = target_;
  temp_ += ".part-" + std::to_string(::getpid());
}

FileSink::~FileSink() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_.empty()) ::unlink(temp_.c_str());
  if (sha_ != nullptr) EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(sha_));
}

Result<void> FileSink::open() {
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return io_fail("create " + temp_.string(), errno);
  auto* ctx = EVP_MD_CTX_new();
  sha_ = ctx;
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1)
    return fail(ErrorCode::internal, "SHA-256 initialisation failed");
  return {};
}

bool FileSink::write(std::string_view data) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(sha_), data.data(), data.size());
  while (!data.empty()) {
    const ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = Error(ErrorCode::io_error, "write " + temp_.string() + ": " + std::strerror(errno),
                     errno);
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
    bytes_ += static_cast<uint64_t>(n);
  }
  return true;
}

Result<void> FileSink::commit(int64_t expected_size, const std::string& expected_sha256) {
  if (expected_size >= 0 && static_cast<uint64_t>(expected_size) != bytes_)
    return fail(ErrorCode::corrupt, "download incomplete: got " + std::to_string(bytes_) +
                                        " bytes, expected " + std::to_string(expected_size));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(sha_), digest, &len);
  static const char* hex = "0123456789abcdef";
  std::string got;
  for (unsigned int i = 0; i < len; ++i) got += {hex[digest[i] >> 4], hex[digest[i] & 15]};
  if (!expected_sha256.empty() && expected_sha256 != got)
    return fail(ErrorCode::corrupt,
                "download corrupt: sha256 " + got + ", expected " + expected_sha256);
  if (::fsync(fd_) != 0) return io_fail("fsync " + temp_.string(), errno);
  if (::close(fd_) != 0) {
    fd_ = -1;
    return io_fail("close " + temp_.string(), errno);
  }
  fd_ = -1;
  if (::rename(temp_.c_str(), target_.c_str()) != 0)
    return io_fail("rename to " + target_.string(), errno);
  committed_ = true;
  const auto dir = target_.has_parent_path() ? target_.parent_path() : std::filesystem::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // make the rename durable too; a failure here leaves a complete file
    ::close(dfd);
  }
  return {};
}

}  // namespace agentlab::ctl
