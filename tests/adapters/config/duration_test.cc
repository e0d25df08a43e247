#include "adapters/config/duration.h"

#include <doctest/doctest.h>

using namespace agentlab::config;
using namespace std::chrono_literals;

TEST_CASE("parse_duration follows Go's syntax and error texts") {
  CHECK(*parse_duration("2m") == 2min);
  CHECK(*parse_duration("1h30m") == 90min);
  CHECK(*parse_duration("500ms") == 500ms);
  CHECK(*parse_duration("1.5s") == 1500ms);
  CHECK(*parse_duration("10us") == 10us);
  CHECK(*parse_duration("10\xC2\xB5s") == 10us);
  CHECK(*parse_duration("-5s") == -5s);
  CHECK(*parse_duration("+3h") == 3h);
  CHECK(*parse_duration("0") == 0s);
  CHECK(*parse_duration(".5m") == 30s);
  CHECK(parse_duration("30").error().message == "time: missing unit in duration \"30\"");
  CHECK(parse_duration("").error().message == "time: invalid duration \"\"");
  CHECK(parse_duration("abc").error().message == "time: invalid duration \"abc\"");
  CHECK(parse_duration("1d").error().message == "time: unknown unit \"d\" in duration \"1d\"");
  CHECK(parse_duration("5m3").error().message == "time: missing unit in duration \"5m3\"");
  CHECK_FALSE(parse_duration(" 5m"));
  CHECK_FALSE(parse_duration("99999999999h"));
}

TEST_CASE("format_duration prints like Go's Duration.String") {
  CHECK(format_duration(0s) == "0s");
  CHECK(format_duration(90min) == "1h30m0s");
  CHECK(format_duration(2min) == "2m0s");
  CHECK(format_duration(1500ms) == "1.5s");
  CHECK(format_duration(500ms) == "500ms");
  CHECK(format_duration(-5s) == "-5s");
}
