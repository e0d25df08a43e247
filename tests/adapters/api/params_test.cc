#include "adapters/api/params.h"

#include <doctest/doctest.h>

using namespace agentlab;
using namespace agentlab::api;

TEST_CASE("query integers: blank is 0, leading + accepted, spaces and negatives rejected") {
  CHECK(parse_query_int("") == 0);
  CHECK(parse_query_int("  ") == 0);
  CHECK(parse_query_int("5") == 5);
  CHECK(parse_query_int("+5") == 5);
  CHECK_FALSE(parse_query_int(" 5").has_value());
  CHECK_FALSE(parse_query_int("-1").has_value());
  CHECK_FALSE(parse_query_int("abc").has_value());
  CHECK_FALSE(parse_query_int("+").has_value());
}

TEST_CASE("path segments strip outer slashes and split") {
  CHECK(path_segments("").empty());
  CHECK(path_segments("/").empty());
  CHECK(path_segments("ID/") == std::vector<std::string>{"ID"});
  CHECK(path_segments("/x/y/z/") == std::vector<std::string>{"x", "y", "z"});
}

TEST_CASE("vmids are positive decimal integers") {
  CHECK(parse_vmid("1000") == 1000);
  CHECK_FALSE(parse_vmid("0").has_value());
  CHECK_FALSE(parse_vmid("-1").has_value());
  CHECK_FALSE(parse_vmid("abc").has_value());
  CHECK_FALSE(parse_vmid("10x").has_value());
  CHECK_FALSE(parse_vmid("").has_value());
}

TEST_CASE("artifact paths: traversal and absolute refused, honest dot names kept") {
  CHECK(normalize_artifact_path("agentlab-artifacts.tar.gz").value() ==
        "agentlab-artifacts.tar.gz");
  CHECK(normalize_artifact_path("logs\\run.txt").value() == "logs/run.txt");
  CHECK(normalize_artifact_path("a//b/./c/").value() == "a/b/c");
  CHECK(normalize_artifact_path("..notes.txt").value() == "..notes.txt");
  CHECK(normalize_artifact_path("../evil").error().message == "artifact path must not traverse");
  CHECK(normalize_artifact_path("a/../../evil").error().message ==
        "artifact path must not traverse");
  CHECK(normalize_artifact_path("/etc/passwd").error().message == "artifact path must be relative");
  CHECK(normalize_artifact_path("  ").error().message == "artifact path is required");
  CHECK(normalize_artifact_path(".").error().message == "artifact path is required");
  CHECK(normalize_artifact_path(std::string_view("a\0b", 3)).error().message ==
        "artifact path contains invalid characters");
}
