// Shared helpers for the simulator tests: a temp state dir and a core on a manual clock.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "adapters/sim/sim_core.h"
#include "engine/clock.h"

namespace agentlab::sim::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "simtest-XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    if (p) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline SimConfig test_config(const std::string& dir, double time_scale = 1.0) {
  SimConfig c;
  c.state_dir = dir + "/state";
  c.time_scale = time_scale;
  c.seed = 42;
  c.overcommit_failures = false;  // deterministic outcomes unless a test asks for failures
  return c;
}

constexpr int64_t kSec = 1'000'000'000;

}  // namespace agentlab::sim::testing
