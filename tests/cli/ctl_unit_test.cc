// Pure parts of agentlab-ctl: value parsers, durations, argument parsing and exit codes,
// tables and renderings, artifact selection, --wait phase derivation, error wording.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/ctl/app.h"
#include "cli/ctl/artifacts.h"
#include "cli/ctl/commands.h"
#include "cli/ctl/duration.h"
#include "cli/ctl/http_client.h"
#include "cli/ctl/parsers.h"
#include "cli/ctl/progress.h"
#include "cli/ctl/render.h"
#include "cli/ctl/table.h"

using namespace agentlab::ctl;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct Run {
  int code;
  std::string out, err;
};

// In-process run against a socket path nobody listens on (no daemon needed for these).
Run ctl(std::vector<std::string> args, const char* env_socket = nullptr) {
  std::ostringstream out, err;
  Env env;
  env.out = &out;
  env.err = &err;
  env.getenv = [env_socket](const char* name) -> const char* {
    return std::string(name) == "AGENTLAB_SOCKET" ? env_socket : nullptr;
  };
  const int code = run_ctl(args, env);
  return {code, out.str(), err.str()};
}

const std::string kNoSocket = "/tmp/agentlab-ctl-unit-no-such.sock";

}  // namespace

TEST_CASE("TTL parser follows the reference table (interfaces.md 5.5)") {
  CHECK(parse_ttl_minutes("120").value() == 120);
  CHECK(parse_ttl_minutes("1h").value() == 60);
  CHECK(parse_ttl_minutes("90s").value() == 2);
  CHECK(parse_ttl_minutes("1m30s").value() == 2);
  CHECK(parse_ttl_minutes("30s").value() == 1);
  CHECK(parse_ttl_minutes("1ms").value() == 1);
  for (const char* bad : {"0", "-1", "-1m"})
    CHECK(parse_ttl_minutes(bad).error().message == "ttl must be positive");
  CHECK(parse_ttl_minutes("abc").error().message == "invalid ttl \"abc\"");
  CHECK(parse_ttl_minutes("").error().message == "invalid ttl \"\"");
}

TEST_CASE("size parser accepts g / gb suffixes, case-insensitive") {
  for (const char* ok : {"10", "10g", "10G", "10GB", "10gb", " 10 "})
    CHECK(parse_size_gb(ok).value() == 10);
  for (const char* bad : {"0", "-1", "abc", "10tb", "g", ""})
    CHECK(parse_size_gb(bad).error().message == "invalid size \"" + std::string(bad) + "\"");
}

TEST_CASE("vmid parser trims and requires a positive integer") {
  CHECK(parse_vmid(" 7 ").value() == 7);
  CHECK(parse_vmid("1020").value() == 1020);
  for (const char* bad : {"0", "-1", "abc", "12x", "", "99999999999"})
    CHECK(parse_vmid(bad).error().message == "invalid vmid \"" + std::string(bad) + "\"");
}

TEST_CASE("Go durations") {
  CHECK(parse_go_duration("500ms").value() == 500ms);
  CHECK(parse_go_duration("30s").value() == 30s);
  CHECK(parse_go_duration("5m").value() == 5min);
  CHECK(parse_go_duration("2h").value() == 2h);
  CHECK(parse_go_duration("1h30m10s").value() == 1h + 30min + 10s);
  CHECK(parse_go_duration("1.5h").value() == 90min);
  CHECK(parse_go_duration(".5s").value() == 500ms);
  CHECK(parse_go_duration("1ns").value() == 1ns);
  CHECK(parse_go_duration("10us").value() == 10us);
  CHECK(parse_go_duration("10\xC2\xB5s").value() == 10us);
  CHECK(parse_go_duration("0").value() == 0ns);
  CHECK(parse_go_duration("-5s").value() == -5s);
  CHECK(parse_go_duration("+5s").value() == 5s);
  for (const char* bad : {"30", "", "s", "5x", "1.s.5", "abc", "-", "3000000h"})
    CHECK_FALSE(parse_go_duration(bad).has_value());
  CHECK(parse_go_duration("30").error().message.find("missing unit") != std::string::npos);
}

TEST_CASE("elapsed and Go duration rendering") {
  CHECK(format_elapsed(850ms) == "850ms");
  CHECK(format_elapsed(2100ms) == "2.1s");
  CHECK(format_elapsed(4250ms) == "4.3s");  // ties round up, not to even
  CHECK(format_elapsed(5049ms) == "5.0s");
  CHECK(format_elapsed(59960ms) == "1m00s");  // not "60.0s"
  CHECK(format_elapsed(89600ms) == "1m30s");
  CHECK(format_elapsed(65s) == "1m05s");
  CHECK(format_elapsed(2h + 3min) == "2h03m");
  CHECK(format_elapsed(-5s) == "0ms");
  CHECK(format_go_duration(10min) == "10m0s");
  CHECK(format_go_duration(90min) == "1h30m0s");
  CHECK(format_go_duration(500ms) == "500ms");
  CHECK(format_go_duration(0ns) == "0s");
}

TEST_CASE("global flags are accepted anywhere on the line") {
  // --json after the positional: the error comes as JSON on stdout, so --json was parsed.
  Run after = ctl({"sandbox", "show", "1020", "--json", "--socket", kNoSocket});
  CHECK(after.code == 1);
  CHECK(json::parse(after.out)["error"].get<std::string>().find(kNoSocket) != std::string::npos);
  CHECK(after.err.empty());
  // --json before the command, --socket between command words.
  Run before = ctl({"--json", "sandbox", "--socket", kNoSocket, "show", "1020"});
  CHECK(before.code == 1);
  CHECK(json::parse(before.out).contains("error"));
  // Without --json: one line on stderr, nothing on stdout.
  Run text = ctl({"sandbox", "show", "1020", "--socket=" + kNoSocket});
  CHECK(text.code == 1);
  CHECK(text.out.empty());
  CHECK(std::count(text.err.begin(), text.err.end(), '\n') == 1);
  // --timeout after everything, a leaf flag after the positional.
  Run renew = ctl({"sandbox", "lease", "renew", "1009", "--ttl", "120", "--socket", kNoSocket,
                   "--timeout", "5s"});
  CHECK(renew.code == 1);  // reached the request: flags after the vmid were parsed
  CHECK(renew.err.find("cannot connect") != std::string::npos);
}

TEST_CASE("socket selection: flag, then AGENTLAB_SOCKET, then the default") {
  Run env = ctl({"status"}, "/tmp/agentlab-ctl-env.sock");
  CHECK(env.err.find("/tmp/agentlab-ctl-env.sock") != std::string::npos);
  Run flag = ctl({"status", "--socket", kNoSocket}, "/tmp/agentlab-ctl-env.sock");
  CHECK(flag.err.find(kNoSocket) != std::string::npos);
  Run empty = ctl({"status", "--socket", ""}, nullptr);
  if (!std::filesystem::exists(kDefaultSocket))
    CHECK(empty.err.find(kDefaultSocket) != std::string::npos);
}

TEST_CASE("usage errors exit 2 with one line that says what to try") {
  Run bogus = ctl({"sandbox", "list", "--bogus"});
  CHECK(bogus.code == 2);
  CHECK(bogus.err ==
        "agentlab-ctl: unknown flag \"--bogus\" for 'sandbox list' (see "
        "'agentlab-ctl sandbox list --help')\n");
  Run missing = ctl({"job", "run", "--repo", "x"});
  CHECK(missing.code == 2);
  CHECK(missing.err.find("is required") != std::string::npos);
  CHECK(missing.err.find("job run --help") != std::string::npos);
  Run no_vmid = ctl({"sandbox", "show"});
  CHECK(no_vmid.code == 2);
  CHECK(no_vmid.err.find("vmid is required") != std::string::npos);
  Run unknown = ctl({"frobnicate"});
  CHECK(unknown.code == 2);
  CHECK(unknown.err.find("unknown command \"frobnicate\"") != std::string::npos);
  Run unknown_sub = ctl({"job", "list"});
  CHECK(unknown_sub.code == 2);
  CHECK(unknown_sub.err.find("unknown job command \"list\"") != std::string::npos);
  Run timeout = ctl({"--timeout", "30", "sandbox", "list"});
  CHECK(timeout.code == 2);
  CHECK(timeout.err.find("invalid value \"30\" for --timeout") != std::string::npos);
  Run bad_vmid = ctl({"sandbox", "show", "abc"});
  CHECK(bad_vmid.code == 2);
  CHECK(bad_vmid.err.find("invalid vmid \"abc\"") != std::string::npos);
  Run bad_ttl = ctl({"sandbox", "lease", "renew", "1009", "--ttl", "0"});
  CHECK(bad_ttl.code == 2);
  CHECK(bad_ttl.err.find("ttl must be positive") != std::string::npos);
  Run bad_size = ctl({"workspace", "create", "--name", "dev", "--size", "10tb"});
  CHECK(bad_size.code == 2);
  Run bad_int = ctl({"logs", "1020", "--tail", "many"});
  CHECK(bad_int.code == 2);
  Run bool_value =
      ctl({"job", "run", "--repo", "r", "--task", "t", "--profile", "p", "--keepalive", "false"});
  CHECK(bool_value.code == 2);
  CHECK(bool_value.err.find("--flag=false") != std::string::npos);
  Run json_usage = ctl({"sandbox", "show", "abc", "--json"});
  CHECK(json_usage.code == 2);
  CHECK(json::parse(json_usage.out)["error"] == "invalid vmid \"abc\"");
  Run both = ctl({"job", "artifacts", "download", "job_x", "--path", "a", "--name", "b"});
  CHECK(both.code == 2);
  CHECK(both.err.find("path and name are mutually exclusive") != std::string::npos);
  Run replay = ctl({"replay"});
  CHECK(replay.code == 2);
}

TEST_CASE("help, version and group words exit 0") {
  Run none = ctl({});
  CHECK(none.code == 0);
  CHECK(none.out.find("Usage: agentlab-ctl") != std::string::npos);
  Run help = ctl({"sandbox", "show", "--help"});
  CHECK(help.code == 0);
  CHECK(help.out.find("agentlab-ctl sandbox show 1020 --json") != std::string::npos);
  Run group = ctl({"job"});
  CHECK(group.code == 0);
  CHECK(group.out.find("run") != std::string::npos);
  Run version = ctl({"--version", "sandbox", "list"});
  CHECK(version.code == 0);
  CHECK(version.out.starts_with("version=0."));
  CHECK(version.out.find(" commit=") != std::string::npos);
  // Every leaf's help has an example.
  for (std::vector<std::string> cmd : {std::vector<std::string>{"job", "run"},
                                       {"job", "show"},
                                       {"job", "wait"},
                                       {"job", "artifacts"},
                                       {"job", "artifacts", "download"},
                                       {"sandbox", "new"},
                                       {"sandbox", "list"},
                                       {"sandbox", "destroy"},
                                       {"sandbox", "lease", "renew"},
                                       {"sandbox", "prune"},
                                       {"sandbox", "start"},
                                       {"sandbox", "stop"},
                                       {"sandbox", "pause"},
                                       {"sandbox", "resume"},
                                       {"workspace", "create"},
                                       {"workspace", "list"},
                                       {"workspace", "show"},
                                       {"workspace", "attach"},
                                       {"workspace", "detach"},
                                       {"workspace", "rebind"},
                                       {"logs"},
                                       {"ssh"},
                                       {"events"},
                                       {"replay"},
                                       {"audit", "verify"},
                                       {"timings"},
                                       {"status"},
                                       {"metrics"},
                                       {"reconcile"},
                                       {"profiles"}}) {
    std::string joined;
    for (const auto& w : cmd) joined += (joined.empty() ? "" : " ") + w;
    cmd.push_back("--help");
    Run r = ctl(cmd);
    CAPTURE(joined);
    CHECK(r.code == 0);
    CHECK(r.out.find("Examples:\n  agentlab-ctl " + joined) != std::string::npos);
  }
}

TEST_CASE("tables align columns with two spaces and print - for empty cells") {
  Table t({"VMID", "NAME", "IP"});
  t.add({"1000", "sandbox-1000", ""});
  t.add({"10001", "x", "10.77.0.2"});
  CHECK(t.render() ==
        "VMID   NAME          IP\n"
        "1000   sandbox-1000  -\n"
        "10001  x             10.77.0.2\n");
  Table empty({"A", "B"});
  CHECK(empty.render() == "A  B\n");
}

TEST_CASE("job, sandbox and workspace text blocks follow the reference") {
  json job = json::parse(R"({"id":"job_1","repo_url":"https://r","ref":"main","profile":"p",
    "task":"t","mode":"dangerous","ttl_minutes":120,"keepalive":false,"status":"QUEUED",
    "created_at":"2026-01-30T12:00:00Z","updated_at":"2026-01-30T12:00:01Z"})");
  CHECK(job_text(job) ==
        "Job ID: job_1\nRepo: https://r\nRef: main\nProfile: p\nTask: t\nMode: dangerous\n"
        "Status: QUEUED\nKeepalive: false\nTTL Minutes: 120\nSandbox VMID: -\n"
        "Created At: 2026-01-30T12:00:00Z\nUpdated At: 2026-01-30T12:00:01Z\n");
  json sb = json::parse(R"({"vmid":1001,"name":"sandbox-1001","profile":"p","state":"RUNNING",
    "keepalive":true,"created_at":"c","updated_at":"u"})");
  CHECK(sandbox_text(sb) ==
        "VMID: 1001\nName: sandbox-1001\nProfile: p\nState: RUNNING\nIP: -\nWorkspace: -\n"
        "Keepalive: true\nLease Expires: -\nCreated At: c\nUpdated At: u\n");
  CHECK(event_line(json::parse(R"({"ts":"T","kind":"job.report","job_id":"job_1"})")) ==
        "T\tjob.report\tjob=job_1\t-\n");
  json artifacts = json::parse(R"({"artifacts":[{"name":"","path":"logs/run.txt","size_bytes":9,
    "sha256":"0123456789abcdef","created_at":"c"}]})");
  CHECK(artifacts_table(artifacts) ==
        "NAME     PATH          SIZE(B)  MIME  CREATED  SHA256\n"
        "run.txt  logs/run.txt  9        -     c        0123456789ab\n");
}

TEST_CASE("timings render the seed's two tables") {
  auto t = nlohmann::ordered_json::parse(R"({"provisioning":{"phases":[
      {"phase":"clone","count":3,"median_s":2.1,"p95_s":4.0,"p99_s":8.25}]},
    "jobs":{"phases":[]},"window":{"since_seconds":3600}})");
  const std::string text = timings_text(t);
  CHECK(text ==
        "Window: since_seconds=3600\n\n"
        "Sandbox provisioning\n"
        "OPERATION  COUNT  MEDIAN  P95   P99\n"
        "clone      3      2.1s    4.0s  8.3s\n"  // 8.25 s: ties round up
        "\nJob execution overhead\n(no jobs in the window)\n");
}

TEST_CASE("pretty_json keeps the daemon's key order and passes non-JSON through") {
  CHECK(pretty_json("{\"b\":1,\"a\":[2]}\n") == "{\n  \"b\": 1,\n  \"a\": [\n    2\n  ]\n}\n");
  CHECK(pretty_json("not json") == "not json");
}

TEST_CASE("metrics text parses into families") {
  json m = metrics_to_json(
      "# HELP agentlab_jobs_total Jobs.\n# TYPE agentlab_jobs_total counter\n"
      "agentlab_jobs_total{status=\"COMPLETED\",profile=\"a\\\"b\"} 3\n"
      "# TYPE agentlab_x_seconds histogram\nagentlab_x_seconds_bucket{le=\"+Inf\"} 2\n"
      "agentlab_x_seconds_sum 1.5\nagentlab_up 1\n");
  CHECK(m["agentlab_jobs_total"]["type"] == "counter");
  CHECK(m["agentlab_jobs_total"]["help"] == "Jobs.");
  CHECK(m["agentlab_jobs_total"]["samples"][0]["labels"]["profile"] == "a\"b");
  CHECK(m["agentlab_jobs_total"]["samples"][0]["value"] == 3.0);
  CHECK(m["agentlab_x_seconds"]["samples"].size() == 2);
  CHECK(m["agentlab_up"]["samples"][0]["value"] == 1.0);
}

TEST_CASE("shell quoting as the reference's ssh output") {
  CHECK(shell_quote("agent@10.0.0.1") == "agent@10.0.0.1");
  CHECK(shell_quote("") == "''");
  CHECK(shell_quote("my key") == "'my key'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("$HOME") == "'$HOME'");
}

TEST_CASE("artifact selection: path, name, bundle, latest") {
  json list = json::parse(R"({"artifacts":[
    {"name":"agentlab-artifacts.tar.gz","path":"agentlab-artifacts.tar.gz","sha256":"a1"},
    {"name":"report.md","path":"out/report.md","sha256":"b1"},
    {"name":"report.md","path":"report.md","sha256":"b2"},
    {"name":"late.txt","path":"late.txt","sha256":"c1"}]})");
  CHECK(select_artifact(list, {"", "", false, true}, "j")->at("sha256") == "a1");
  CHECK(select_artifact(list, {"", "", false, false}, "j")->at("sha256") == "a1");  // default
  CHECK(select_artifact(list, {"", "", true, false}, "j")->at("sha256") == "c1");
  CHECK(select_artifact(list, {"", "report.md", false, false}, "j")->at("sha256") == "b2");
  CHECK(select_artifact(list, {"out/report.md", "", false, false}, "j")->at("sha256") == "b1");
  CHECK(select_artifact(list, {"x", "", false, false}, "j").error().message ==
        "artifact path \"x\" not found");
  CHECK(select_artifact(list, {"", "x", false, false}, "j").error().message ==
        "artifact name \"x\" not found");
  CHECK(select_artifact(list, {"a", "b", false, false}, "j").error().message ==
        "path and name are mutually exclusive");
  CHECK(select_artifact(list, {"", "a/b", false, false}, "j").error().message ==
        "artifact name must not contain path separators");
  json no_bundle =
      json::parse(R"({"artifacts":[{"name":"a","path":"a"},{"name":"b","path":"b"}]})");
  CHECK(select_artifact(no_bundle, {"", "", false, true}, "j")->at("name") == "b");
  CHECK(select_artifact(json::parse(R"({"artifacts":[]})"), {}, "job_9").error().message ==
        "no artifacts found for job job_9");
}

TEST_CASE("--out resolution") {
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/ctl-out-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  json a =
      json::parse(R"({"name":"agentlab-artifacts.tar.gz","path":"agentlab-artifacts.tar.gz"})");
  CHECK(resolve_out_path("", a).value() == fs::path("./agentlab-artifacts.tar.gz"));
  CHECK(resolve_out_path(dir + "/new/", a).value() ==
        fs::path(dir + "/new/agentlab-artifacts.tar.gz"));
  CHECK(fs::is_directory(dir + "/new"));
  CHECK(resolve_out_path(dir, a).value() == fs::path(dir) / "agentlab-artifacts.tar.gz");
  CHECK(resolve_out_path(dir + "/sub/x.tgz", a).value() == fs::path(dir + "/sub/x.tgz"));
  CHECK(fs::is_directory(dir + "/sub"));
  json evil = json::parse(R"({"name":"..","path":"../.."})");
  CHECK(resolve_out_path(dir + "/", evil).value() == fs::path(dir + "/artifact"));
  fs::remove_all(dir);
}

TEST_CASE("FileSink publishes only complete, intact downloads") {
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/ctl-sink-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  // sha256("abc")
  const std::string abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  {
    FileSink sink(dir + "/ok");
    REQUIRE(sink.open().has_value());
    CHECK(sink.write("ab"));
    CHECK(sink.write("c"));
    CHECK(sink.commit(3, abc).has_value());
  }
  std::ifstream in(dir + "/ok");
  std::string got((std::istreambuf_iterator<char>(in)), {});
  CHECK(got == "abc");
  {
    FileSink sink(dir + "/bad");
    REQUIRE(sink.open().has_value());
    CHECK(sink.write("abd"));
    CHECK(sink.commit(3, abc).error().code == agentlab::ErrorCode::corrupt);
  }
  {
    FileSink sink(dir + "/short");
    REQUIRE(sink.open().has_value());
    CHECK(sink.write("ab"));
    CHECK(sink.commit(3, "").error().message.find("incomplete") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(dir + "/bad"));
  CHECK_FALSE(fs::exists(dir + "/short"));
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  CHECK(files == 1);  // no .part files left behind
  fs::remove_all(dir);
}

TEST_CASE("RFC 3339 parsing") {
  auto t = parse_rfc3339("2026-01-30T12:00:00.5Z");
  REQUIRE(t.has_value());
  auto base = parse_rfc3339("2026-01-30T12:00:00Z");
  CHECK(*t - *base == std::chrono::milliseconds(500));
  CHECK(parse_rfc3339("2026-01-30T13:00:00+01:00") == base);
  CHECK_FALSE(parse_rfc3339("2026-01-30 12:00:00Z").has_value());
  CHECK_FALSE(parse_rfc3339("2026-01-30T12:00:00").has_value());
}

TEST_CASE("phase derivation from event kinds") {
  using K = PhaseUpdate::Kind;
  auto d = [](const char* text) { return derive_phase(json::parse(text)); };
  CHECK(d(R"({"kind":"job.created"})").kind == K::begin);
  CHECK(d(R"({"kind":"job.queued"})").phase == "queued");
  CHECK(d(R"({"kind":"job.admitted"})").phase == "provisioning");
  CHECK(d(R"({"kind":"sandbox.clone.requested"})").phase == "clone");
  auto end = d(R"({"kind":"sandbox.guest_ip.completed","payload":{"duration_ns":2000000000}})");
  CHECK(end.kind == K::end);
  CHECK(end.phase == "guest_ip");
  CHECK(end.duration == 2s);
  CHECK(d(R"({"kind":"sandbox.start.failed","msg":"boom"})").kind == K::note);
  CHECK(d(R"({"kind":"job.running"})").phase == "running");
  CHECK(d(R"({"kind":"job.report","msg":"repo ready","payload":{"status":"RUNNING"}})").phase ==
        "agent");
  CHECK(d(R"({"kind":"job.report","msg":"log chunk","payload":{"status":"RUNNING"}})").kind ==
        K::note);
  auto done = d(R"({"kind":"job.report","stage":"COMPLETED"})");
  CHECK(done.kind == K::terminal);
  CHECK(done.status == "COMPLETED");
  CHECK(d(R"({"kind":"job.failed"})").status == "FAILED");
  CHECK(d(R"({"kind":"job.timed_out"})").status == "TIMEOUT");
  CHECK(d(R"({"kind":"job.completed"})").status == "COMPLETED");
  CHECK(d(R"({"kind":"token.issued"})").kind == K::none);
  CHECK(d(R"({"kind":"sandbox.state","stage":"READY"})").kind == K::none);
}

TEST_CASE("JobProgress builds phase spans with their durations") {
  JobProgress p("job_1");
  auto ev = [](const char* kind, const char* ts, const char* extra = "") {
    return json::parse(std::string(R"({"kind":")") + kind + R"(","ts":")" + ts + "\"" + extra +
                       "}");
  };
  p.apply(ev("job.created", "2026-01-30T12:00:00Z"));
  p.apply(ev("job.admitted", "2026-01-30T12:00:01Z"));
  // A completed step without a requested event: its own duration places it.
  p.apply(ev("sandbox.clone.completed", "2026-01-30T12:00:04Z",
             R"(,"payload":{"duration_ns":2000000000})"));
  p.apply(ev("sandbox.start.requested", "2026-01-30T12:00:04.5Z"));
  p.apply(ev("sandbox.start.completed", "2026-01-30T12:00:10Z",
             R"(,"payload":{"duration_ns":5500000000})"));
  p.apply(ev("job.running", "2026-01-30T12:00:10Z"));
  CHECK(p.take_plain_lines().find("phase clone done in 2.0s") != std::string::npos);
  p.apply(
      ev("job.report", "2026-01-30T12:00:20Z", R"(,"msg":"agent finished","stage":"COMPLETED")"));
  REQUIRE(p.terminal_status().has_value());
  CHECK(*p.terminal_status() == "COMPLETED");
  std::vector<std::pair<std::string, std::chrono::milliseconds>> spans;
  for (const auto& s : p.spans())
    if (s.end && *s.end > s.start)
      spans.push_back(
          {s.name, std::chrono::duration_cast<std::chrono::milliseconds>(*s.end - s.start)});
  std::vector<std::pair<std::string, std::chrono::milliseconds>> want{
      {"queued", 1000ms},
      {"provisioning", 1000ms},
      {"clone", 2000ms},
      {"start", 6000ms},
      {"running", 10000ms}};  // the gap before a step counts as the step
  CHECK(spans == want);
  const std::string block = p.render_block(std::chrono::system_clock::now(), 0);
  CHECK(block.find("+ clone") != std::string::npos);
  CHECK(block.find("= COMPLETED after 20.0s") != std::string::npos);
  const std::string plain = p.take_plain_lines();
  CHECK(plain == "phase running done in 10.0s\n");
  CHECK(p.take_plain_lines().empty());                             // printed once
  CHECK_FALSE(p.apply(ev("job.failed", "2026-01-30T12:00:21Z")));  // ended: later events ignored
}

TEST_CASE("the TTY renderer redraws in place") {
  TtyRenderer r;
  CHECK(r.redraw("a\nb\n") == "a\nb\n");
  CHECK(r.redraw("c\n") == "\x1b[2F\x1b[Jc\n");
}

TEST_CASE("error lines: daemon down names the socket and how to start agentlabd") {
  Run r = ctl({"sandbox", "list", "--socket", kNoSocket});
  CHECK(r.code == 1);
  CHECK(r.err == "agentlab-ctl: cannot connect to agentlabd: no socket at " + kNoSocket +
                     "; is agentlabd running? Start it with 'agentlabd --config "
                     "/etc/agentlab/config.yaml' (or 'scripts/quickstart' for a local demo), or "
                     "point --socket / AGENTLAB_SOCKET at its socket\n");
}

TEST_CASE("path segments and query values are percent-encoded") {
  CHECK(url_escape("job_3f9a") == "job_3f9a");
  CHECK(url_escape("my ws/x") == "my%20ws%2Fx");
  CHECK(query_escape("job:job_1") == "job:job_1");
  CHECK(query_escape("logs/run 1.txt") == "logs/run%201.txt");
  CHECK(query_escape("a&b=c?") == "a%26b%3Dc%3F");
}

TEST_CASE("the daemon's job.report: stage COMPLETED with payload status Completed is terminal") {
  auto u = derive_phase(json::parse(
      R"({"kind":"job.report","stage":"COMPLETED","msg":"agent finished","payload":{"status":"Completed"}})"));
  CHECK(u.kind == PhaseUpdate::Kind::terminal);
  CHECK(u.status == "COMPLETED");
  auto p = derive_phase(json::parse(R"({"kind":"job.report","payload":{"status":"Timeout"}})"));
  CHECK(p.status == "TIMEOUT");
  auto r = derive_phase(
      json::parse(R"({"kind":"job.report","stage":"RUNNING","payload":{"status":"Running"}})"));
  CHECK(r.kind == PhaseUpdate::Kind::note);
}

TEST_CASE("plain progress: no placeholder spans, repeated notes once") {
  JobProgress p("job_2");
  auto ev = [](const std::string& body) { return json::parse(body); };
  p.apply(ev(R"({"kind":"job.admitted","ts":"2026-01-30T12:00:00Z"})"));
  p.apply(ev(
      R"({"kind":"sandbox.clone.completed","ts":"2026-01-30T12:00:02Z","payload":{"duration_ns":1000000000}})"));
  p.apply(ev(
      R"({"kind":"sandbox.start.completed","ts":"2026-01-30T12:00:05Z","payload":{"duration_ns":1000000000}})"));
  p.apply(
      ev(R"({"kind":"artifact.upload","ts":"2026-01-30T12:00:06Z","msg":"artifact uploaded: a"})"));
  p.apply(
      ev(R"({"kind":"artifact.upload","ts":"2026-01-30T12:00:07Z","msg":"artifact uploaded: a"})"));
  CHECK(p.take_plain_lines() ==
        "phase clone done in 1.0s\nphase start done in 1.0s\n  artifact uploaded: a\n");
}

TEST_CASE("timings also render the daemon's flat phase map, in its order") {
  auto t = nlohmann::ordered_json::parse(R"({"phases":{
      "clone":{"count":2,"median_s":0.05,"p95_s":0.08,"p99_s":0.08},
      "guest_agent_ready":{"count":0,"median_s":0,"p95_s":0,"p99_s":0},
      "job_queue_to_admitted":{"count":2,"median_s":0.03,"p95_s":0.03,"p99_s":0.03}},
    "window":{"from_seq":0,"last_seq":80}})");
  CHECK(timings_text(t) ==
        "Window: from_seq=0, last_seq=80\n\n"
        "Sandbox provisioning\n"
        "OPERATION          COUNT  MEDIAN  P95   P99\n"
        "clone              2      50ms    80ms  80ms\n"
        "guest_agent_ready  0      -       -     -\n"
        "\nJob execution overhead\n"
        "PHASE                  COUNT  MEDIAN  P95   P99\n"
        "job_queue_to_admitted  2      30ms    30ms  30ms\n");
}
