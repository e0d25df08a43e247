#include "cli/agentlabd/guest_api.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "adapters/api/params.h"
#include "adapters/api/request_json.h"
#include "adapters/guest/bootstrap_payload.h"
#include "adapters/guest/secrets_bundle.h"
#include "cli/agentlabd/aligned_buffer.h"
#include "cli/agentlabd/direct_write.h"
#include "engine/id_source.h"
#include "events/digest.h"
#include "events/kinds.h"
#include "projections/queries.h"

namespace agentlab::daemon {
namespace {

using api::FieldSpec;
using api::FieldType;
using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// ---- source checks ----

// A token bucket per source IP: guests are few and polite; a flood from one address (a runaway
// runner, a scan) must not starve the loop.
class RateLimiter {
 public:
  bool allow(const std::string& ip, uint64_t now_ms) {
    auto& b = buckets_[ip];
    if (b.last_ms == 0) b = {kBurst, now_ms};
    b.tokens = std::min(kBurst, b.tokens + static_cast<double>(now_ms - b.last_ms) * kPerMs);
    b.last_ms = now_ms;
    if (b.tokens < 1.0) return false;
    b.tokens -= 1.0;
    if (buckets_.size() > 4096) buckets_.clear();  // bounded memory against address sprays
    return true;
  }

 private:
  static constexpr double kBurst = 200;
  static constexpr double kPerMs = 0.1;  // 100 requests/s sustained
  struct Bucket {
    double tokens = 0;
    uint64_t last_ms = 0;
  };
  std::unordered_map<std::string, Bucket> buckets_;
};

RateLimiter& limiter() {
  static RateLimiter l;
  return l;
}

// Subnet and rate checks shared by every guest route; answers and returns false when refused.
bool admit_source(ApiContext& ctx, http::Request& req, http::ResponseWriter& w,
                  std::string_view refusal) {
  if (!in_subnet(req.peer.ip, ctx.settings.agent_subnet)) {
    w.error(403, refusal);
    return false;
  }
  if (!limiter().allow(req.peer.ip, uv_now(ctx.loop))) {
    w.error(429, "too many requests");
    return false;
  }
  return true;
}

std::optional<std::string> bearer_token(const http::Request& req) {
  auto h = req.header("Authorization");
  if (!h) return std::nullopt;
  std::string_view v = *h;
  if (v.size() < 7) return std::nullopt;
  std::string scheme(v.substr(0, 7));
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "bearer ") return std::nullopt;
  std::string token(v.substr(7));
  auto b = token.find_first_not_of(" \t");
  if (b == std::string::npos) return std::nullopt;
  return token.substr(b, token.find_last_not_of(" \t") - b + 1);
}

// ---- bootstrap fetch ----

constexpr std::array<FieldSpec, 2> kFetchFields = {{
    {"token", FieldType::string},
    {"vmid", FieldType::integer},
}};

// The payload is rendered by the guest library, next to the runner that reads it, so the one
// daemon/guest contract lives in one place.
std::string build_payload(const ApiContext& ctx, const projections::Job& job,
                          const engine::Profile* profile, const guest::SecretsBundle* bundle,
                          const std::string& artifact_token) {
  guest::BootstrapPayloadInput in;
  in.job.id = job.id;
  in.job.repo_url = job.repo_url;
  in.job.ref = job.ref;
  in.job.task = job.task;
  in.job.mode = job.mode;
  in.job.profile = job.profile;
  in.job.keepalive = job.keepalive;
  in.job.ttl_minutes = job.ttl_minutes;
  in.bundle = bundle;
  in.artifact_endpoint = ctx.settings.artifact_upload_url;
  in.artifact_token = artifact_token;
  // One per-job bearer credential for uploads and reports; it dies with the job (decision 9).
  in.report_token = artifact_token;
  if (profile != nullptr) {
    in.inner_sandbox = profile->inner_sandbox;
    in.inner_sandbox_args = profile->inner_sandbox_args;
    std::string word;
    for (char c : profile->agent_command + " ") {
      if (c == ' ' || c == '\t') {
        if (!word.empty()) in.agent_command.push_back(std::move(word));
        word.clear();
      } else {
        word += c;
      }
    }
  }
  return guest::render_bootstrap_payload(in);
}

void bootstrap_fetch(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  if (!admit_source(ctx, req, w, "bootstrap access restricted to agent subnet")) return;
  auto body = api::JsonBody::parse(req.body, kFetchFields);
  if (!body) return reply_error(w, body.error());
  std::string token = body->string("token").value_or("");
  int64_t vmid = body->integer("vmid").value_or(0);
  if (token.empty()) return (void)w.error(400, "token is required");
  if (vmid <= 0 || vmid > INT32_MAX) return (void)w.error(400, "vmid must be positive");
  // The token is checked before anything about the VM or its job is revealed (decision 9).
  const auto& st = ctx.core->state();
  auto it = st.tokens.find(engine::sha256_hex(token));
  const int64_t now = ctx.core->clock().wall_ns();
  if (it == st.tokens.end() || it->second.kind != fb::TokenKind::Bootstrap ||
      it->second.vmid != vmid || it->second.consumed_ns != 0 || it->second.revoked ||
      it->second.expires_ns <= now)
    return (void)w.error(403, "invalid or expired bootstrap token");
  if (projections::job_for_sandbox(st, static_cast<int32_t>(vmid)) == nullptr)
    return (void)w.error(404, "job not found");

  // The bundle is read and decrypted on the thread pool (file reads, maybe a sops child).
  struct Work {
    uv_work_t req{};
    ApiContext* ctx = nullptr;
    http::ResponseWriter writer;
    std::string token;
    int32_t vmid = 0;
    guest::SecretsStoreConfig store;
    std::string bundle_name;
    Result<guest::SecretsBundle> bundle = guest::SecretsBundle{};
  };
  auto* work = new Work;
  work->ctx = &ctx;
  work->writer = std::move(w);
  work->token = std::move(token);
  work->vmid = static_cast<int32_t>(vmid);
  work->store.secrets_dir = ctx.settings.secrets_dir;
  work->store.age_key_path = ctx.settings.secrets_age_key_path;
  work->store.sops_path = ctx.settings.secrets_sops_path;
  work->bundle_name = ctx.settings.secrets_bundle;
  work->req.data = work;
  uv_queue_work(
      ctx.loop, &work->req,
      [](uv_work_t* r) {
        auto* wk = static_cast<Work*>(r->data);
        wk->bundle = guest::load_bundle(wk->bundle_name, wk->store);
      },
      [](uv_work_t* r, int) {
        std::unique_ptr<Work> wk(static_cast<Work*>(r->data));
        ApiContext& ctx = *wk->ctx;
        std::shared_ptr<guest::SecretsBundle> bundle;
        if (wk->bundle) {
          bundle = std::make_shared<guest::SecretsBundle>(std::move(*wk->bundle));
          for (const auto& v : guest::bundle_secret_values(*bundle)) ctx.redactor->add_literal(v);
          for (const auto& [k, v] : bundle->env) ctx.redactor->add_key(k);
        } else if (wk->bundle.error().code != ErrorCode::not_found) {
          // A broken bundle is an operator problem; the token stays usable for a retry.
          spdlog::get("guest")
              ? spdlog::get("guest")->error("secrets bundle: {}", wk->bundle.error().describe())
              : spdlog::error("secrets bundle: {}", wk->bundle.error().describe());
          return (void)wk->writer.error(500, "failed to load secrets bundle");
        }  // no bundle at all: the job runs without secrets (decision 15)
        engine::RecordBootstrapFetch cmd{wk->vmid, wk->token};
        auto writer = wk->writer;
        int32_t vmid = wk->vmid;
        ctx.core->execute(cmd, [&ctx, writer, vmid, bundle](Result<engine::Outcome> r) mutable {
          if (!r) return reply_error(writer, r.error());
          ctx.redactor->add_literal(r->secret);
          const auto* job = projections::get_job(ctx.core->state(), r->job_id);
          if (job == nullptr) return (void)writer.error(404, "job not found");
          const engine::Profile* profile = nullptr;
          if (auto p = ctx.core->profiles().find(job->profile); p != ctx.core->profiles().end())
            profile = &p->second;
          (void)vmid;
          writer.send(200, build_payload(ctx, *job, profile, bundle.get(), r->secret) + "\n",
                      "application/json");
        });
      });
}

// ---- runner report ----

constexpr std::array<std::string_view, 5> kArtifactKeys = {"name", "path", "size_bytes", "sha256",
                                                           "mime"};
const std::array<FieldSpec, 6> kReportFields = {{
    {"job_id", FieldType::string},
    {"vmid", FieldType::integer},
    {"status", FieldType::string},
    {"message", FieldType::string},
    {"artifacts", FieldType::object_list, kArtifactKeys},
    {"result", FieldType::any},
}};

// Redacts every string value in `j`, at any depth.
void redact_strings(const api::Redactor& redactor, nlohmann::json& j) {
  if (j.is_string()) {
    j = redactor.redact(j.get_ref<const std::string&>());
  } else if (j.is_structured()) {
    for (auto& v : j) redact_strings(redactor, v);
  }
}

void runner_report(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  if (!admit_source(ctx, req, w, "runner access restricted to agent subnet")) return;
  auto body = api::JsonBody::parse(req.body, kReportFields);
  if (!body) return reply_error(w, body.error());
  engine::RecordReport cmd;
  cmd.job_id = body->string("job_id").value_or("");
  cmd.vmid = static_cast<int32_t>(body->integer("vmid").value_or(0));
  cmd.status = body->string("status").value_or("");
  // Reports authenticate with the job's bearer token; token-less reports only when the operator
  // allows the reference's old runner (decision 9). The status check comes first, as before.
  auto status = events::parse_job_status(cmd.status);
  if (!status || *status == fb::JobStatusCode::Queued)
    return (void)w.error(400, "invalid job status");
  if (auto token = bearer_token(req)) {
    auto tok = engine::check_artifact_token(ctx.core->state(), *token, ctx.core->clock().wall_ns());
    if (!tok) {
      // A finished job's token is revoked; its late reports are answered like the reference's.
      const auto* job = projections::get_job(ctx.core->state(), cmd.job_id);
      const auto* t = ctx.core->state().tokens.find(engine::sha256_hex(*token)) !=
                              ctx.core->state().tokens.end()
                          ? &ctx.core->state().tokens.at(engine::sha256_hex(*token))
                          : nullptr;
      if (job != nullptr && t != nullptr && t->job_id == job->id &&
          (job->status == fb::JobStatusCode::Completed ||
           job->status == fb::JobStatusCode::Failed || job->status == fb::JobStatusCode::Timeout))
        return (void)w.error(409, "job already finalized");
      return (void)w.error(403, "invalid report token");
    }
    if ((*tok)->job_id != cmd.job_id) return (void)w.error(403, "report token is not for this job");
  } else if (!ctx.settings.accept_unauthenticated_reports) {
    return (void)w.error(401, "missing bearer token");
  }
  cmd.message = ctx.redactor->redact(body->string("message").value_or(""));
  if (const auto* arts = body->raw("artifacts")) {
    for (const auto& a : *arts) {
      if (!a.is_object()) continue;
      projections::ArtifactMeta m;
      auto str = [&](const char* k) {
        for (auto it = a.begin(); it != a.end(); ++it)
          if (it.key().size() == std::strlen(k) &&
              strncasecmp(it.key().c_str(), k, it.key().size()) == 0 && it.value().is_string())
            return it.value().get<std::string>();
        return std::string();
      };
      m.name = str("name");
      m.path = str("path");
      m.sha256 = str("sha256");
      m.mime = str("mime");
      for (auto it = a.begin(); it != a.end(); ++it)
        if (strcasecmp(it.key().c_str(), "size_bytes") == 0 && it.value().is_number_unsigned())
          m.size_bytes = it.value().get<uint64_t>();
      cmd.artifacts.push_back(std::move(m));
    }
  }
  if (const auto* result = body->raw("result")) {
    // The result is stored in the log verbatim, so a secret echoed in it (an agent's error
    // text quoting a key) is redacted like the message.
    nlohmann::json redacted = *result;
    redact_strings(*ctx.redactor, redacted);
    cmd.result_json = redacted.dump();
  }
  ctx.core->execute(std::move(cmd), [w](Result<engine::Outcome> r) mutable {
    if (!r) return reply_error(w, r.error());
    json out = json::object();
    out["job_status"] = std::string(events::job_status_name(r->job_status));
    out["sandbox_status"] = std::string(events::sandbox_state_name(r->sandbox_state));
    w.json(200, out);
  });
}

// ---- artifact upload ----

void log_io_error(std::string_view what, int err) {
  auto log = spdlog::get("guest");
  if (log)
    log->error("{}: {}", what, std::strerror(err));
  else
    spdlog::error("{}: {}", what, std::strerror(err));
}

std::string sniff_mime(std::string_view head) {
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x1f &&
      static_cast<unsigned char>(head[1]) == 0x8b)
    return "application/x-gzip";
  if (head.starts_with("%PDF-")) return "application/pdf";
  if (head.starts_with("PK\x03\x04")) return "application/zip";
  if (head.starts_with("\x89PNG")) return "image/png";
  if (head.starts_with("{") || head.starts_with("[")) return "text/plain; charset=utf-8";
  for (unsigned char c : head)
    if (c < 0x09 || (c > 0x0d && c < 0x20 && c != 0x1b)) return "application/octet-stream";
  return "text/plain; charset=utf-8";
}

// The body is gathered into buffers on the loop thread, each queued once it holds its piece of
// the body: 128 KiB for the first, doubling up to 1 MiB. (Small first pieces start hashing and
// writing early, so an upload of a few MiB does not wait for a whole 1 MiB buffer before either
// begins; a 1 MiB body is done about half a millisecond sooner. Every piece is a multiple of
// 4 KiB, so every offset stays aligned for O_DIRECT.) Queued buffers wait in file
// order and two chains work through them independently on the thread pool: the hash chain feeds
// SHA-256 and the write chain pwrites at the buffer's offset. A chain's job does not stop after
// one buffer: it goes on to the next queued one by itself and tells the loop of each finished
// buffer through an async handle, so SHA-256 — the slowest step, and the bound of the whole
// upload — never waits for a loop turn between buffers (that wait cost ~15 % of its time). A buffer
// is reused once both chains have passed it; the socket is paused only while all kUploadBuffers
// are taken. So an upload holds at most kUploadBuffers buffers whatever its size, and the loop
// never waits on the disk. One fsync at the end, also on the thread pool, makes the file durable
// before the artifact.upload event.
constexpr size_t kUploadBuffer = 1 << 20;  // the largest piece
constexpr size_t kFirstPiece = 128 << 10;
// A body chunk can arrive after the buffer filled and before the pause took effect (at most
// what the connection holds unparsed: one socket read plus its input buffer); the reserve
// takes it without reallocating.
constexpr size_t kUploadSlack = 512 << 10;
constexpr size_t kUploadBuffers = 4;

struct Upload : std::enable_shared_from_this<Upload> {
  ApiContext* ctx = nullptr;
  http::ResponseWriter writer;
  std::string token;
  std::string job_id;
  std::string path;  // normalised relative path
  std::string mime;  // from Content-Type, without parameters
  std::string temp;  // absolute temp file
  uv_file fd = -1;
  uint64_t size = 0;     // bytes received
  uint64_t written = 0;  // bytes handed to the thread pool (the next write's offset)
  std::string head;      // first 512 bytes, for sniffing
  std::unique_ptr<events::Sha256> sha;
  struct Buffer {
    AlignedBuffer data{kUploadBuffer + kUploadSlack};
    uint64_t offset = 0;  // where it goes in the file
    bool hashed = false, written = false;
  };
  // Whole buffers are written with O_DIRECT where the file system allows it: the data goes to
  // the device from our buffer, with no page-cache copy (on 2 cores that copy costs as much CPU
  // as receiving the body). Touched only by the write chain (one job at a time) after open.
  bool direct = false;
  std::unique_ptr<Buffer> fill;                // being filled on the loop thread
  size_t piece = kFirstPiece;                  // how much `fill` takes before it is queued
  std::vector<std::unique_ptr<Buffer>> spare;  // empty, capacity kept
  size_t buffers = 0;                          // allocated, wherever they are
  // Shared with the chains' jobs, under `mu`: the queue, the buffers' hashed/written marks, the
  // chain flags and the first write error. A chain's flag is set by the loop when it starts the
  // chain's job and cleared by that job when it finds nothing left to do.
  std::mutex mu;
  std::deque<std::unique_ptr<Buffer>> queued;  // full, in file order, until hashed and written
  bool hashing = false, writing = false;
  int io_err = 0;
  std::atomic<bool> abandoned{false};  // failed: the chains stop at the next buffer
  uv_async_t* progress = nullptr;      // a chain finished a buffer (sent from the thread pool)
  int jobs = 0;                        // jobs on the thread pool (chains and the final one)
  bool paused = false;                 // we paused the body
  bool body_done = false;
  bool failed = false;
  bool finishing = false;  // finish() runs once: resume_body() may deliver the end re-entrantly
  std::shared_ptr<Upload> self;

  // One thread-pool job. A hash or write job only reads its buffer, which the loop leaves alone
  // until both chains have passed it; one hash job at a time uses `sha`, in file order.
  struct Io {
    uv_work_t req{};
    Upload* up = nullptr;
    Buffer* buf = nullptr;
    bool hash = false;  // a hash-chain job, else a write-chain one
    int err = 0;        // errno of a failed write, sync or rename
    std::string what;   // the step that failed
    // The final job's input and results.
    std::string sha_hex;
    std::string root;  // artifact_dir
    int version = 1;
    std::string stored, target;
    fs::path synced_up_to;
  };

  ~Upload() {
    // On the loop thread, with no job running (they hold the upload through `self`).
    if (progress != nullptr)
      uv_close(reinterpret_cast<uv_handle_t*>(progress), [](uv_handle_t* h) {
        delete static_cast<std::weak_ptr<Upload>*>(h->data);
        delete reinterpret_cast<uv_async_t*>(h);
      });
  }

  // The async handle through which the chains report; `self` must be set.
  void open_progress() {
    progress = new uv_async_t;
    uv_async_init(ctx->loop, progress, [](uv_async_t* h) {
      if (auto up = static_cast<std::weak_ptr<Upload>*>(h->data)->lock()) up->advance();
    });
    progress->data = new std::weak_ptr<Upload>(weak_from_this());
    // Running jobs keep the loop alive; an idle upload's handle must not (a drain would hang).
    uv_unref(reinterpret_cast<uv_handle_t*>(progress));
  }

  void discard() {
    if (fd >= 0) {
      uv_fs_t r;
      uv_fs_close(nullptr, &r, fd, nullptr);
      uv_fs_req_cleanup(&r);
      fd = -1;
    }
    if (!temp.empty()) {
      std::error_code ec;
      fs::remove(temp, ec);
      temp.clear();
    }
    self.reset();
  }

  void fail_with(int status, const std::string& message) {
    failed = true;
    abandoned = true;
    writer.error(status, message);
    if (jobs == 0) discard();
  }

  void on_data(std::string_view chunk) {
    if (failed) return;
    if (head.size() < 512) head.append(chunk.substr(0, 512 - head.size()));
    size += chunk.size();
    if (fill && chunk.data() == fill->data.tail().data() &&
        fill->data.size() + chunk.size() <= piece) {
      // The socket read landed in our buffer (read_target()): nothing to copy.
      fill->data.commit(chunk.size());
      if (fill->data.size() >= piece) queue_fill();
      return;
    }
    // Cut at piece boundaries so that every queued buffer but the last is a whole number of
    // pieces (aligned file offsets for O_DIRECT) without copying anything twice.
    while (!chunk.empty()) {
      if (!fill) fill = take_buffer();
      const size_t room = fill->data.size() < piece ? piece - fill->data.size() : 0;
      const size_t take = paused || room == 0 ? chunk.size() : std::min(room, chunk.size());
      fill->data.append(chunk.substr(0, take));
      chunk.remove_prefix(take);
      if (fill->data.size() >= piece) queue_fill();
    }
  }

  // Where the next socket read may land: the free part of `fill` up to the buffer boundary.
  http::BodySink::ReadTarget read_target() {
    if (failed || paused || body_done) return {};
    if (!fill) {
      if (spare.empty() && buffers >= kUploadBuffers) return {};
      fill = take_buffer();
    }
    if (fill->data.size() >= piece) return {};
    std::span<char> t = fill->data.tail().first(piece - fill->data.size());
    return {t, shared_from_this()};
  }

  // A buffer for `fill`: a spare one, a new one while under the limit, else nullptr.
  std::unique_ptr<Buffer> take_buffer() {
    if (!spare.empty()) {
      auto b = std::move(spare.back());
      spare.pop_back();
      return b;
    }
    ++buffers;
    return std::make_unique<Buffer>();
  }

  // Queues the full (or, at the end of the body, last) `fill` and takes the next one; when every
  // buffer is taken, pauses the body instead and `fill` takes the slack until one frees up.
  void queue_fill() {
    if (!body_done && spare.empty() && buffers >= kUploadBuffers) {
      if (!paused) {
        paused = true;
        writer.pause_body();
      }
      return;
    }
    std::unique_ptr<Buffer> full = std::move(fill);
    const size_t cut = piece;
    piece = std::min(piece * 2, kUploadBuffer);
    if (!body_done) {
      fill = take_buffer();
      // Bytes past the boundary (taken in while paused) start the next buffer.
      if (full->data.size() > cut) {
        const size_t keep = full->data.size() / cut * cut;
        fill->data.append(std::string_view(full->data.data() + keep, full->data.size() - keep));
        full->data.truncate(keep);
      }
    }
    full->offset = written;
    written += full->data.size();
    {
      std::lock_guard lock(mu);
      queued.push_back(std::move(full));
    }
    pump();
  }

  // Starts the job of each idle chain that has a buffer waiting.
  void pump() {
    Buffer* next[2] = {nullptr, nullptr};
    {
      std::lock_guard lock(mu);
      for (bool hash : {true, false}) {
        bool& running = hash ? hashing : writing;
        if (running || io_err != 0) continue;
        next[hash] = next_for(hash);
        running = next[hash] != nullptr;
      }
    }
    for (bool hash : {true, false})
      if (next[hash] != nullptr) start_job(next[hash], hash);
  }

  // The first queued buffer the chain has not passed yet. Requires `mu`.
  Buffer* next_for(bool hash) {
    for (auto& b : queued)
      if (!(hash ? b->hashed : b->written)) return b.get();
    return nullptr;
  }

  void start_job(Buffer* b, bool hash) {
    ++jobs;
    auto* io = new Io;
    io->up = this;
    io->buf = b;
    io->hash = hash;
    io->req.data = io;
    uv_queue_work(
        ctx->loop, &io->req, [](uv_work_t* r) { run_chain(*static_cast<Io*>(r->data)); },
        [](uv_work_t* r, int) {
          std::unique_ptr<Io> io(static_cast<Io*>(r->data));
          Upload* up = io->up;
          --up->jobs;
          up->advance();
        });
  }

  // One chain's job, on the thread pool: its step for `io.buf`, then for every later buffer that
  // is queued by the time the step is done, until none is left, a write fails or the upload is
  // abandoned. Only this job touches `sha` (hash chain) or the file (write chain) meanwhile, and
  // it reads only buffers the loop leaves alone until both chains have passed them.
  static void run_chain(Io& io) {
    Upload* up = io.up;
    for (Buffer* b = io.buf; b != nullptr;) {
      int err = 0;
      if (io.hash)
        up->sha->update(b->data.data(), b->data.size());
      else
        err = write_piece(*up, *b);
      {
        std::lock_guard lock(up->mu);
        (io.hash ? b->hashed : b->written) = true;
        if (err != 0 && up->io_err == 0) up->io_err = err;
        b = err != 0 || up->abandoned ? nullptr : up->next_for(io.hash);
        if (b == nullptr) (io.hash ? up->hashing : up->writing) = false;
      }
      uv_async_send(up->progress);
    }
  }

  // Writes one buffer at its offset. Write chain only; returns 0 or an errno.
  static int write_piece(Upload& up, const Buffer& b) {
    const AlignedBuffer& d = b.data;
    if (int err = write_piece_at(up.fd, d.data(), d.size(), b.offset, up.direct); err != 0)
      return err;
    // Buffered: start writing this piece to the disk now rather than leave the whole body to the
    // final fsync, so the device works while later pieces arrive and are hashed, and the fsync
    // at the end only waits for the tail. (Failures surface at that fsync.)
    if (!up.direct)
      ::sync_file_range(up.fd, static_cast<off_t>(b.offset), static_cast<off_t>(d.size()),
                        SYNC_FILE_RANGE_WRITE);
    return 0;
  }

  // On the loop, when a chain finished a buffer or a job ended: recycles the buffers both chains
  // passed, then goes on — more buffers to the chains, the body resumed, or the end.
  void advance() {
    if (finishing) return;
    int err = 0;
    bool drained = false;
    {
      std::lock_guard lock(mu);
      while (!queued.empty() && queued.front()->hashed && queued.front()->written) {
        auto b = std::move(queued.front());
        queued.pop_front();
        b->data.clear();
        b->hashed = b->written = false;
        spare.push_back(std::move(b));
      }
      err = io_err;
      drained = queued.empty();
    }
    if (failed) {  // the client went away (or was refused) meanwhile
      if (jobs == 0) discard();
      return;
    }
    if (err != 0) {
      if (jobs > 0) return;  // discard() must wait for the other chain's job
      log_io_error("artifact write", err);
      return fail_with(500, "failed to write artifact");
    }
    if (fill && fill->data.size() >= piece) queue_fill();
    pump();
    if (body_done && drained && jobs == 0 && (!fill || fill->data.empty())) return finish();
    if (paused && (!fill || fill->data.size() < piece)) {
      paused = false;
      writer.resume_body();  // may deliver more body, or its end, before it returns
    }
  }

  void on_end() {
    body_done = true;
    if (failed) return;
    if (fill && !fill->data.empty()) queue_fill();
    bool drained;
    {
      std::lock_guard lock(mu);
      drained = queued.empty();
    }
    if (drained && jobs == 0) finish();  // else advance() goes on from here
  }

  void on_error(const Error&) {
    // Client gone mid-body, or over the limit (the server already answered 413): keep nothing.
    failed = true;
    abandoned = true;
    if (jobs == 0) discard();
  }

  // Every byte is written. On the thread pool: make the file durable, move it to its place and
  // make that rename durable too (the event will point at it); then record it on the loop.
  void finish() {
    if (finishing) return;
    finishing = true;
    if (size == 0) return fail_with(400, "artifact body is empty");
    ++jobs;
    auto* io = new Io;
    io->up = this;
    io->req.data = io;
    // Each version keeps its own file: the first at <job>/<path> (the reference's layout), later
    // ones under <job>/.versions/<n>/<path>. The version is read from the state here, on the
    // loop; placing never replaces a file, so an upload of the same name whose event is not
    // committed yet (it holds that version's file) pushes this one to the next version.
    io->version = 1;
    if (auto it = ctx->core->state().artifacts.find(job_id);
        it != ctx->core->state().artifacts.end())
      for (const auto& a : it->second)
        if (a.path == path) io->version = std::max(io->version, a.version + 1);
    io->root = ctx->settings.artifact_dir;
    uv_queue_work(
        ctx->loop, &io->req,
        [](uv_work_t* r) {
          auto* io = static_cast<Io*>(r->data);
          Upload* up = io->up;
          const events::Sha256Digest digest = up->sha->finish();
          static constexpr char kHex[] = "0123456789abcdef";
          for (size_t i = 0; i < digest.size(); ++i) {
            io->sha_hex += kHex[digest[i] >> 4];
            io->sha_hex += kHex[digest[i] & 15];
          }
          if (::fsync(up->fd) != 0) {
            io->err = errno;
            io->what = "artifact fsync";
            return;
          }
          ::close(up->fd);
          up->fd = -1;
          io->err = place_file(up->temp, up->job_id, up->path, *io);
          if (io->err == 0) up->temp.clear();
        },
        [](uv_work_t* r, int) {
          std::unique_ptr<Io> io(static_cast<Io*>(r->data));
          io->up->placed(*io);
        });
  }

  // Moves `temp` to the first free version's name under `io.root` and fsyncs the directories
  // it touched. Returns 0 or an errno (io.what says which step). Runs on the thread pool.
  static int place_file(const std::string& temp, const std::string& job_id, const std::string& path,
                        Io& io) {
    for (;; ++io.version) {
      io.stored = io.version == 1
                      ? job_id + "/" + path
                      : job_id + "/.versions/" + std::to_string(io.version) + "/" + path;
      io.target = io.root + "/" + io.stored;
      std::error_code ec;
      // The deepest directory that already exists: it and everything below it get synced.
      io.synced_up_to = fs::path(io.target).parent_path();
      while (!io.synced_up_to.empty() && io.synced_up_to != io.synced_up_to.parent_path() &&
             !fs::exists(io.synced_up_to, ec))
        io.synced_up_to = io.synced_up_to.parent_path();
      fs::create_directories(fs::path(io.target).parent_path(), ec);
      if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, io.target.c_str(), RENAME_NOREPLACE) == 0)
        break;
      if (errno == EEXIST) continue;
      if (errno == EINVAL) {
        // A filesystem without RENAME_NOREPLACE: link() never replaces either.
        if (::link(temp.c_str(), io.target.c_str()) == 0) {
          ::unlink(temp.c_str());
          break;
        }
        if (errno == EEXIST) continue;
      }
      io.what = "artifact rename";
      return errno;
    }
    // The new name, and any directory created for it, are durable once their parents are
    // synced: from the file's directory up to the deepest one that existed before.
    for (fs::path dir = fs::path(io.target).parent_path(); !dir.empty(); dir = dir.parent_path()) {
      int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd < 0 || ::fsync(dfd) != 0) {
        int e = errno;
        if (dfd >= 0) ::close(dfd);
        io.what = "artifact directory fsync";
        return e;
      }
      ::close(dfd);
      if (dir == io.synced_up_to || dir == dir.parent_path()) break;
    }
    return 0;
  }

  void placed(const Io& io) {
    --jobs;
    if (failed) {
      // Refused meanwhile: keep nothing.
      std::error_code ec;
      if (io.err == 0) fs::remove(io.target, ec);
      return discard();
    }
    if (io.err != 0) {
      log_io_error(io.what, io.err);
      return fail_with(500, io.what == "artifact fsync" ? "failed to persist artifact"
                                                        : "failed to finalize artifact");
    }
    std::string stored = io.stored, target = io.target;
    temp.clear();
    engine::RecordArtifactUpload cmd;
    cmd.token = token;
    cmd.path = path;
    cmd.name = fs::path(path).filename().string();
    cmd.size_bytes = size;
    cmd.sha256 = io.sha_hex;
    cmd.mime = mime.empty() ? sniff_mime(head) : mime;
    cmd.stored_path = stored;
    auto keep = self;
    ctx->core->execute(cmd, [keep, target, cmd](Result<engine::Outcome> r) mutable {
      if (!r) {
        std::error_code ec2;
        fs::remove(target, ec2);
        keep->writer.error(r.error().code == ErrorCode::forbidden ? 403 : 500,
                           r.error().code == ErrorCode::forbidden ? r.error().message
                                                                  : "failed to record artifact");
        keep->self.reset();
        return;
      }
      json art = json::object();
      art["name"] = cmd.name;
      art["path"] = cmd.path;
      art["size_bytes"] = cmd.size_bytes;
      art["sha256"] = cmd.sha256;
      if (!cmd.mime.empty()) art["mime"] = cmd.mime;
      if (r->version > 1) art["version"] = r->version;
      keep->writer.json(201, json{{"job_id", r->job_id}, {"artifact", std::move(art)}});
      keep->self.reset();
    });
  }
};

void upload(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  if (!admit_source(ctx, req, w, "artifact access restricted to agent subnet")) return;
  auto token = bearer_token(req);
  if (!token) return (void)w.error(401, "missing bearer token");
  auto tok = engine::check_artifact_token(ctx.core->state(), *token, ctx.core->clock().wall_ns());
  if (!tok) return (void)w.error(403, tok.error().message);
  auto raw_path = req.query_param("path");
  auto path = api::normalize_artifact_path(
      raw_path && !raw_path->empty() ? *raw_path : "agentlab-artifacts.tar.gz");
  if (!path) return reply_error(w, path.error());
  const std::string job_id = (*tok)->job_id;
  if (job_id.find('/') != std::string::npos)
    return (void)w.error(400, "job id contains invalid path characters");
  if (ctx.settings.artifact_dir.empty())
    return (void)w.error(400, "artifact root is not configured");
  std::error_code ec;
  std::string job_dir = ctx.settings.artifact_dir + "/" + job_id;
  fs::create_directories(job_dir, ec);
  if (ec) return (void)w.error(500, "failed to create artifact directory");
  fs::permissions(job_dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec,
                  ec);

  auto up = std::make_shared<Upload>();
  up->ctx = &ctx;
  up->writer = w;
  up->token = *token;
  up->job_id = job_id;
  up->path = *path;
  if (auto ct = req.header("Content-Type")) {
    std::string m(ct->substr(0, ct->find(';')));
    while (!m.empty() && m.back() == ' ') m.pop_back();
    up->mime = m;
  }
  engine::CsprngIdSource ids;
  up->temp = job_dir + "/.upload-" + ids.hex(6) + ".tmp";
  uv_fs_t r;
  up->fd = uv_fs_open(nullptr, &r, up->temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640,
                      nullptr);
  uv_fs_req_cleanup(&r);
  if (up->fd < 0) return (void)w.error(500, "failed to write artifact");
  up->direct = enable_direct_io(up->fd);
  up->sha = std::make_unique<events::Sha256>();
  up->self = up;
  up->open_progress();
  // Weak references: discard() may free the upload while the server still holds these
  // callbacks (a disconnect runs the sink's on_error and then the disconnect callbacks).
  std::weak_ptr<Upload> weak = up;
  http::BodySink sink;
  sink.on_data = [weak](std::string_view chunk) {
    if (auto u = weak.lock()) u->on_data(chunk);
  };
  sink.on_end = [weak] {
    if (auto u = weak.lock()) u->on_end();
  };
  sink.on_error = [weak](const Error& e) {
    if (auto u = weak.lock()) u->on_error(e);
  };
  sink.read_target = [weak]() -> http::BodySink::ReadTarget {
    if (auto u = weak.lock()) return u->read_target();
    return {};
  };
  w.on_disconnect([weak] {
    if (auto u = weak.lock(); u && !u->body_done)
      u->on_error(Error(ErrorCode::cancelled, "client gone"));
  });
  if (!w.read_body(std::move(sink))) up->discard();
}

void healthz(http::Request&, http::ResponseWriter w) {
  w.send(200, "ok");
}

}  // namespace

bool in_subnet(std::string_view ip, std::string_view cidr) {
  if (cidr.empty()) return true;
  auto slash = cidr.find('/');
  std::string net(cidr.substr(0, slash));
  int bits =
      slash == std::string_view::npos ? -1 : std::atoi(std::string(cidr.substr(slash + 1)).c_str());
  std::string addr(ip);
  if (addr.starts_with("::ffff:") && addr.find('.') != std::string::npos) addr = addr.substr(7);
  unsigned char a[16], n[16];
  int family = net.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  if (addr.find(':') != std::string::npos && family == AF_INET) return false;
  if (inet_pton(family, addr.c_str(), a) != 1 || inet_pton(family, net.c_str(), n) != 1)
    return false;
  int total = family == AF_INET ? 32 : 128;
  if (bits < 0 || bits > total) bits = total;
  for (int i = 0; i < bits; ++i) {
    int byte = i / 8, bit = 7 - i % 8;
    if (((a[byte] >> bit) & 1) != ((n[byte] >> bit) & 1)) return false;
  }
  // The unspecified address never counts as inside (interfaces.md §1.2).
  bool zero = true;
  for (int i = 0; i < total / 8; ++i) zero = zero && a[i] == 0;
  return !zero;
}

void add_bootstrap_routes(http::Router& router, ApiContext& ctx) {
  router.any("/healthz", healthz);
  router.post("/v1/bootstrap/fetch", [&ctx](http::Request& req, http::ResponseWriter w) {
    bootstrap_fetch(ctx, req, std::move(w));
  });
  router.post("/v1/runner/report", [&ctx](http::Request& req, http::ResponseWriter w) {
    runner_report(ctx, req, std::move(w));
  });
}

void add_artifact_routes(http::Router& router, ApiContext& ctx) {
  router.any("/healthz", healthz);
  http::RouteOptions opts;
  opts.stream_body = true;
  opts.max_body_bytes = ctx.settings.artifact_max_bytes;
  router.post(
      "/upload",
      [&ctx](http::Request& req, http::ResponseWriter w) { upload(ctx, req, std::move(w)); }, opts);
}

}  // namespace agentlab::daemon
