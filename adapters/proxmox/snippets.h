// Cloud-init user-data snippets on the Proxmox host's filesystem (spec §5.2), shared by both
// backends: Proxmox reads them from a storage's `snippets/` folder, and its API has no call to
// upload one, so the daemon writes the file itself (it runs on the host).
//
// File work runs on the libuv thread pool (uv_queue_work) so the loop never blocks on a disk.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "engine/hypervisor.h"

namespace agentlab::proxmox {

struct SnippetOptions {
  std::string dir = "/var/lib/vz/snippets";  // snippets_dir
  std::string storage = "local";             // snippet_storage: the storage whose snippets/ is dir
  // Fills the buffer with random bytes; called on a thread-pool thread. Empty: OpenSSL RAND_bytes.
  // Tests inject a fixed source.
  std::function<void(uint8_t* out, size_t n)> random;
};

// `agentlab-<vmid>-<16 lowercase hex>.yaml` from 8 random bytes.
std::string snippet_file_name(int vmid, const uint8_t random8[8]);
// Whether `name` is a file name snippet_file_name() could have produced.
bool is_snippet_file_name(std::string_view name);

class SnippetStore {
 public:
  // Requires: loop outlives the store and every call's completion.
  SnippetStore(uv_loop_t* loop, SnippetOptions options);

  // Creates dir (mode 0755) if missing, then the file with O_CREAT|O_EXCL, mode 0600, drawing a
  // new name on a collision (5 tries). Result: ref `<storage>:snippets/<file>` and the path.
  // Errors: invalid_argument (vmid <= 0, empty content), io_error (errno as library_code).
  // `done` runs on the loop thread, never synchronously.
  void write(const engine::SnippetSpec& spec, engine::Done<engine::SnippetRef> done);
  // Deletes the file; a file already gone is success. Only files in dir with a snippet name are
  // touched (the path comes from ref.path, else from ref.ref); anything else is invalid_argument.
  void remove(const engine::SnippetRef& ref, engine::Done<void> done);

  const SnippetOptions& options() const { return options_; }

 private:
  uv_loop_t* loop_;
  SnippetOptions options_;
};

}  // namespace agentlab::proxmox
