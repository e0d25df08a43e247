#include "events/error.h"

#include <cerrno>

namespace agentlab {

std::string_view code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::not_found:
      return "not_found";
    case ErrorCode::conflict:
      return "conflict";
    case ErrorCode::invalid_transition:
      return "invalid_transition";
    case ErrorCode::timeout:
      return "timeout";
    case ErrorCode::proxmox_error:
      return "proxmox_error";
    case ErrorCode::io_error:
      return "io_error";
    case ErrorCode::no_space:
      return "no_space";
    case ErrorCode::corrupt:
      return "corrupt";
    case ErrorCode::incompatible:
      return "incompatible";
    case ErrorCode::read_only:
      return "read_only";
    case ErrorCode::unavailable:
      return "unavailable";
    case ErrorCode::internal:
      return "internal";
    case ErrorCode::cancelled:
      return "cancelled";
    case ErrorCode::forbidden:
      return "forbidden";
    case ErrorCode::too_large:
      return "too_large";
  }
  return "internal";
}

ErrorCode code_for_errno(int e) {
  switch (e) {
    case ENOSPC:
    case EDQUOT:
      return ErrorCode::no_space;
    case EROFS:
    case EACCES:
    case EPERM:
      return ErrorCode::read_only;
    default:
      return ErrorCode::io_error;
  }
}

std::string Error::describe() const {
  std::string out(code_name(code));
  out += ": ";
  out += message;
  return out;
}

}  // namespace agentlab
