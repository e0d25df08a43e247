#include "events/error.h"

#include <doctest/doctest.h>

#include <cerrno>

#include "events/events_generated.h"

using namespace agentlab;

TEST_CASE("code_name gives the stable wire name of every code") {
  CHECK(code_name(ErrorCode::invalid_transition) == "invalid_transition");
  CHECK(code_name(ErrorCode::not_found) == "not_found");
  CHECK(code_name(ErrorCode::too_large) == "too_large");
}

TEST_CASE("fail() builds an unexpected Result carrying code, message and library number") {
  Result<int> r = fail(ErrorCode::no_space, "disk full", 28);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::no_space);
  CHECK(r.error().library_code == 28);
  CHECK(r.error().describe() == "no_space: disk full");
}

TEST_CASE("code_for_errno sorts file-system errors into what a caller can act on") {
  using agentlab::code_for_errno;
  using agentlab::ErrorCode;
  CHECK(code_for_errno(ENOSPC) == ErrorCode::no_space);
  CHECK(code_for_errno(EDQUOT) == ErrorCode::no_space);
  CHECK(code_for_errno(EROFS) == ErrorCode::read_only);
  CHECK(code_for_errno(EACCES) == ErrorCode::read_only);
  CHECK(code_for_errno(EPERM) == ErrorCode::read_only);
  CHECK(code_for_errno(EIO) == ErrorCode::io_error);
  CHECK(code_for_errno(0) == ErrorCode::io_error);
}
