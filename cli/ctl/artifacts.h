// `job artifacts download`: which artifact to fetch, where to put it, and a file sink that
// writes the streamed body durably (temp file, SHA-256 check, fsync, rename).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "events/error.h"

namespace agentlab::ctl {

inline constexpr std::string_view kBundleName = "agentlab-artifacts.tar.gz";

struct ArtifactSelector {
  std::string path;  // exact stored path
  std::string name;  // the newest artifact with this name
  bool latest = false;
  bool bundle = false;  // implied when none of the others is given
};

// Picks from {"artifacts":[…]} (oldest first, as the daemon lists them), in the order path,
// name, bundle (newest named agentlab-artifacts.tar.gz, else the newest), latest.
// Errors: invalid_argument for "path and name are mutually exclusive" and a name with a path
// separator; not_found for an empty list ("no artifacts found for job <id>") or no match.
Result<nlohmann::json> select_artifact(const nlohmann::json& list, const ArtifactSelector& sel,
                                       const std::string& job_id);

// Where the file goes: no --out → ./<base name>; --out ending in '/' → that directory (created,
// mode 0750); an existing directory → inside it; anything else → that exact path (its parent
// created). The base name comes from the artifact's name (or path); "." / ".." / "" become
// "artifact", so a daemon-supplied name can never escape the chosen directory.
Result<std::filesystem::path> resolve_out_path(const std::string& out,
                                               const nlohmann::json& artifact);

// Receives a download body and publishes it at `target` only when complete and intact.
class FileSink {
 public:
  explicit FileSink(std::filesystem::path target);
  ~FileSink();  // removes the temp file unless commit() succeeded
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  Result<void> open();
  bool write(std::string_view data);  // false on a write error (see error())
  // fsync, check size and SHA-256 when given (empty = unchecked), rename into place, fsync
  // the directory.
  Result<void> commit(int64_t expected_size, const std::string& expected_sha256);
  const Error& error() const { return error_; }
  uint64_t bytes() const { return bytes_; }

 private:
  std::filesystem::path target_;
  std::filesystem::path temp_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
  void* sha_ = nullptr;  // EVP_MD_CTX*
  bool committed_ = false;
  Error error_;
};

}  // namespace agentlab::ctl
