// Helpers shared by the guest tests: temp dirs, files, and running tools with argv.
#pragma once

#include <string>
#include <vector>

namespace agentlab::guest::testing {

// A fresh directory under $TMPDIR (or /tmp), removed recursively on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& content, int mode = 0644);
std::string read_file(const std::string& path);
bool exists(const std::string& path);
int file_mode(const std::string& path);  // permission bits, -1 if missing

// Runs argv (no shell) and returns stdout; fails the current test on a non-zero exit.
std::string run_ok(const std::vector<std::string>& argv, const std::string& cwd = "");

}  // namespace agentlab::guest::testing
