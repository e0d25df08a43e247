#include "adapters/api/redactor.h"

#include <doctest/doctest.h>

using namespace agentlab::api;

TEST_CASE("key shapes are redacted: key=value, JSON, quoted") {
  Redactor r;
  CHECK(r.redact("token=abcdef123") == "token=[REDACTED]");
  CHECK(r.redact("clone failed: GITHUB_TOKEN = 'ghp_x' done") ==
        "clone failed: GITHUB_TOKEN = '[REDACTED]' done");
  CHECK(r.redact("{\"access_token\" : \"s3cr3t\"}") == "{\"access_token\" : \"[REDACTED]\"}");
  CHECK(r.redact("private_key: ABCDEF more") == "private_key: [REDACTED] more");
  CHECK(r.redact("nothing secret here") == "nothing secret here");
  // Whole words only: `tokenizer=x` is not the key `token`.
  CHECK(r.redact("tokenizer=fast") == "tokenizer=fast");
}

TEST_CASE("literal values are replaced everywhere; short ones ignored") {
  Redactor r;
  r.add_literal("0123456789abcdef0123456789abcdef");
  r.add_literal("abc");  // too short to be a secret
  CHECK(r.redact("used 0123456789abcdef0123456789abcdef twice 0123456789abcdef0123456789abcdef") ==
        "used [REDACTED] twice [REDACTED]");
  CHECK(r.redact("abc") == "abc");
}

TEST_CASE("bundle env keys become redaction keys") {
  Redactor r;
  r.add_key("MY_SERVICE_PASSWORD");
  CHECK(r.redact("export MY_SERVICE_PASSWORD=hunter22") == "export MY_SERVICE_PASSWORD=[REDACTED]");
}
