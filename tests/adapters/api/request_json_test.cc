#include "adapters/api/request_json.h"

#include <doctest/doctest.h>

#include <array>

using namespace agentlab;
using namespace agentlab::api;

namespace {
constexpr std::array<std::string_view, 5> kArtifactKeys = {"name", "path", "size_bytes", "sha256",
                                                           "mime"};
const std::array<FieldSpec, 5> kFields = {{
    {"repo_url", FieldType::string},
    {"ttl_minutes", FieldType::integer},
    {"keepalive", FieldType::boolean},
    {"result", FieldType::any},
    {"artifacts", FieldType::object_list, kArtifactKeys},
}};

std::string error_of(std::string_view body) {
  auto r = JsonBody::parse(body, kFields);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::invalid_argument);
  return r.error().message;
}
}  // namespace

TEST_CASE("empty, trailing and malformed bodies get the reference's messages") {
  CHECK(error_of("") == "EOF");
  CHECK(error_of("  \n") == "EOF");
  CHECK(error_of("{} {}") == "unexpected trailing data");
  CHECK(error_of("{\"repo\":\"x\"}") == "json: unknown field \"repo\"");
  CHECK(error_of("{\"ttl_minutes\":\"5\"}") ==
        "json: cannot unmarshal string into field ttl_minutes of type int");
  CHECK(error_of("{\"ttl_minutes\":1.5}") ==
        "json: cannot unmarshal number into field ttl_minutes of type int");
  CHECK(error_of("{\"artifacts\":[{\"name\":\"a\",\"bogus\":1}]}") ==
        "json: unknown field \"bogus\"");
  CHECK(error_of("[1]").starts_with("json: cannot unmarshal array"));
  CHECK(error_of("{\"repo_url\":") == "unexpected EOF");  // Go's io.ErrUnexpectedEOF
  CHECK(error_of("{} x") == "unexpected trailing data");
  CHECK(error_of("{\"repo_url\" 1}").starts_with("invalid JSON body: "));
}

TEST_CASE("null means absent; keys match case-insensitively; strings are trimmed") {
  auto r = JsonBody::parse(
      "{\"REPO_URL\":\"  https://x  \",\"ttl_minutes\":null,\"keepalive\":false}", kFields);
  REQUIRE(r.has_value());
  CHECK(r->string("repo_url") == "https://x");
  CHECK_FALSE(r->has("ttl_minutes"));
  CHECK_FALSE(r->integer("ttl_minutes").has_value());
  REQUIRE(r->boolean("keepalive").has_value());
  CHECK(*r->boolean("keepalive") == false);
  auto n = JsonBody::parse("null", kFields);
  REQUIRE(n.has_value());
  CHECK_FALSE(n->has("repo_url"));
}

TEST_CASE("any-typed fields keep the raw JSON value") {
  auto r = JsonBody::parse("{\"result\":{\"exit_code\":0},\"ttl_minutes\":0}", kFields);
  REQUIRE(r.has_value());
  REQUIRE(r->raw("result") != nullptr);
  CHECK((*r->raw("result"))["exit_code"] == 0);
  CHECK(r->integer("ttl_minutes") == 0);  // present with 0 differs from absent
  CHECK(r->has("ttl_minutes"));
}
