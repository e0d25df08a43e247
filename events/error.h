// Errors as values: every fallible call inside agentlab returns Result<T>.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace agentlab {

// Stable machine-readable error codes. The name (code_name()) is part of the API: it appears
// in JSON error envelopes and CLI output, so never rename one; add new ones at the end.
enum class ErrorCode {
  invalid_argument,    // bad input from a caller; nothing was changed
  not_found,           // the thing asked for does not exist
  conflict,            // the request contradicts current state (duplicate id, taken VMID)
  invalid_transition,  // a state machine forbids the requested move
  timeout,             // a deadline passed before the operation finished
  proxmox_error,       // Proxmox (or the simulator) reported a failure
  io_error,            // a file, socket or disk operation failed
  no_space,            // ENOSPC / MDB_MAP_FULL that could not be resolved
  corrupt,             // stored data failed an integrity or format check
  incompatible,        // data written by a newer, incompatible schema version
  read_only,           // the state dir cannot be written
  unavailable,         // a dependency is not running or not configured
  internal,            // a bug or an unexpected library failure
  cancelled,           // the operation was cancelled (shutdown, client gone)
  forbidden,           // authentication or authorization failed
  too_large,           // a body or value exceeds a configured limit
};

std::string_view code_name(ErrorCode code);

// What a failed file-system call's errno means to a caller: ENOSPC/EDQUOT → no_space,
// EROFS/EACCES/EPERM → read_only, anything else → io_error.
ErrorCode code_for_errno(int e);

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string message;
  // The originating library's own number where one exists (MDB_MAP_FULL, UV_ECONNREFUSED,
  // errno, a curl code); 0 when the error is ours.
  int library_code = 0;

  Error() = default;
  Error(ErrorCode c, std::string msg, int lib = 0)
      : code(c), message(std::move(msg)), library_code(lib) {}

  // "code: message", for logs and exception-free diagnostics.
  std::string describe() const;
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(ErrorCode code, std::string message, int library_code = 0) {
  return std::unexpected<Error>(Error(code, std::move(message), library_code));
}

}  // namespace agentlab
