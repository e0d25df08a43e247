// Sandbox profiles from the profiles directory (proxmox-config-guest.md §7), loaded with
// yaml-cpp into engine::Profile. Each YAML document is its own profile (the reference applied
// the first document's settings to every profile of a file; we do not).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/profile.h"
#include "events/error.h"

namespace agentlab::config {

// An immutable, validated set of profiles. Build a new one to change anything (SIGHUP): the
// loaders return a new set or an error and never touch an existing set.
class ProfileSet {
 public:
  ProfileSet() = default;

  // Loads every regular file directly in `dir` whose name ends in .yaml or .yml (any case),
  // in lexical order; other files and subdirectories are ignored. Rules:
  //  * every non-empty YAML document is one profile; empty documents (a file with only
  //    comments, a leading or trailing `---`) are skipped. Document indexes in messages count
  //    every document of the file from 0, empty ones included, so they match the file.
  //  * `name` (non-empty) and `template_vmid` (integer > 0; a quoted "9000" is not an integer,
  //    9000.0 is) are required;
  //  * a value of the wrong type anywhere we read (resources.cores: "4") fails the load,
  //    naming the key and its line (the reference failed such profiles later, at use);
  //  * a negative artifacts retention value fails the load;
  //  * host-mount keys and an unsupported behavior.inner_sandbox do NOT fail the load: they
  //    are recorded in Profile::invalid_reason, which provisioning reports (§7.4);
  //  * a name used twice (in one file or across files) fails, naming both places.
  // Errors (ErrorCode::invalid_argument; io_error for an unreadable directory/file):
  //   read profiles dir <dir>: <reason>
  //   parse profile <path> (line <n>): <yaml error>
  //   profile <path> (document <i>) missing name
  //   profile <path> (document <i>) missing template_vmid
  //   profile <path> (document <i>) line <n>: resources.cores: expected an integer, got "4"
  //   duplicate profile name "<n>" in <path> (document <j>); first defined in <path> (document <i>)
  static Result<ProfileSet> load(const std::string& dir);

  // The same from in-memory files: (path used in messages, YAML text) in the given order.
  static Result<ProfileSet> from_texts(
      const std::vector<std::pair<std::string, std::string>>& files);

  // nullptr when absent.
  const engine::Profile* find(std::string_view name) const;
  // Sorted by name.
  const std::vector<engine::Profile>& profiles() const { return profiles_; }
  size_t size() const { return profiles_.size(); }
  bool empty() const { return profiles_.empty(); }
  // The directory it was loaded from ("" for from_texts).
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<engine::Profile> profiles_;
};

// The profiles of one file, in document order (no duplicate check across files).
Result<std::vector<engine::Profile>> parse_profile_file(std::string_view text,
                                                        const std::string& path);

// What a reload changed, by profile name (each list sorted).
struct ProfileSetDiff {
  std::vector<std::string> added;
  std::vector<std::string> removed;
  std::vector<std::string> changed;  // same name, different settings
  bool empty() const { return added.empty() && removed.empty() && changed.empty(); }
};
ProfileSetDiff diff_profiles(const ProfileSet& before, const ProfileSet& after);

// Equal settings (everything except source_file and document_index).
bool same_settings(const engine::Profile& a, const engine::Profile& b);

// behavior.inner_sandbox normalisation (§7.4): trim, lowercase; none/off/false/0/disabled and
// empty → "" (disabled); true/yes/1/bwrap → "bubblewrap"; anything else is returned as is
// (lowercased) and is unsupported.
std::string normalize_inner_sandbox(std::string_view value);

// The current profile set with SIGHUP-style reload. Loop-thread only: the set is replaced,
// never modified, so a holder of current() keeps a consistent snapshot.
class ProfileStore {
 public:
  explicit ProfileStore(std::string dir) : dir_(std::move(dir)) {}
  // Loads the directory; on success replaces the current set and returns what changed; on
  // failure keeps the current set and returns the error.
  Result<ProfileSetDiff> reload();
  std::shared_ptr<const ProfileSet> current() const { return current_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::shared_ptr<const ProfileSet> current_ = std::make_shared<const ProfileSet>();
};

}  // namespace agentlab::config
