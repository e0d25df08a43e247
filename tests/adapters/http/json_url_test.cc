#include <doctest/doctest.h>

#include "adapters/http/json.h"
#include "adapters/http/url.h"

using namespace agentlab::http;

TEST_CASE("json helpers: Go's escaping, envelope without newline, success with newline") {
  nlohmann::ordered_json j;
  j["b"] = "<a href=\"x\">&</a>";
  j["a"] = 1;
  CHECK(json_compact(j) ==
        "{\"b\":\"\\u003ca href=\\\"x\\\"\\u003e\\u0026\\u003c/a\\u003e\",\"a\":1}");
  CHECK(json_body(nlohmann::json{{"z", 1}, {"a", 2}}) == "{\"a\":2,\"z\":1}\n");
  CHECK(error_body("job not found") == "{\"error\":\"job not found\"}");
  CHECK(error_body("line\u2028sep") == "{\"error\":\"line\\u2028sep\"}");
  // Invalid UTF-8 does not throw.
  CHECK(error_body(std::string("bad\xff")) == "{\"error\":\"bad\xef\xbf\xbd\"}");
}

TEST_CASE("url: percent decoding, query parsing, host:port splitting") {
  CHECK(percent_decode("a%20b+c", false) == "a b+c");
  CHECK(percent_decode("a%20b+c", true) == "a b c");
  CHECK_FALSE(percent_decode("%4", false));
  CHECK_FALSE(percent_decode("%zz", false));
  auto q = parse_query("tail=5&after=&x&k%3D=v%26&tail=6");
  REQUIRE(q.size() == 5);
  CHECK(q[0] == std::pair<std::string, std::string>{"tail", "5"});
  CHECK(q[1] == std::pair<std::string, std::string>{"after", ""});
  CHECK(q[2] == std::pair<std::string, std::string>{"x", ""});
  CHECK(q[3] == std::pair<std::string, std::string>{"k=", "v&"});

  auto hp = split_host_port("10.77.0.1:8844");
  REQUIRE(hp);
  CHECK(hp->host == "10.77.0.1");
  CHECK(hp->port == "8844");
  hp = split_host_port("[::1]:9090");
  REQUIRE(hp);
  CHECK(hp->host == "::1");
  hp = split_host_port(":8844");
  REQUIRE(hp);
  CHECK(hp->host.empty());
  std::string err;
  CHECK_FALSE(split_host_port("127.0.0.1", &err));
  CHECK(err == "address 127.0.0.1: missing port in address");
  CHECK_FALSE(split_host_port("::1:80", &err));
  CHECK(err == "address ::1:80: too many colons in address");
}
