#include "events/value_codec.h"

#include <zlib.h>

#include <algorithm>
#include <memory>

namespace agentlab::events {

namespace {

constexpr uint8_t kDictionary[] = {
#include "events/value_dictionary.inc"
};

constexpr uint8_t kTagVerbatim = 0x00;
constexpr uint8_t kTagDeflate = 0x01;
// Envelopes are small; a stored value larger than this is not one of ours.
constexpr size_t kMaxEnvelope = 64u << 20;

// One deflate and one inflate stream per thread, reset per value: setting up a stream costs
// far more than compressing one envelope.
struct Deflater {
  z_stream zs{};
  bool ok = false;
  Deflater() { ok = deflateInit2(&zs, 1, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) == Z_OK; }
  ~Deflater() {
    if (ok) deflateEnd(&zs);
  }
};
struct Inflater {
  z_stream zs{};
  bool ok = false;
  Inflater() { ok = inflateInit2(&zs, -15) == Z_OK; }
  ~Inflater() {
    if (ok) inflateEnd(&zs);
  }
};

void verbatim(std::span<const uint8_t> envelope, std::vector<uint8_t>& out) {
  out.assign(1, kTagVerbatim);
  out.insert(out.end(), envelope.begin(), envelope.end());
}

}  // namespace

void compress_value(std::span<const uint8_t> envelope, std::vector<uint8_t>& out) {
  thread_local Deflater d;
  const uLong bound = deflateBound(&d.zs, envelope.size());
  if (!d.ok || deflateReset(&d.zs) != Z_OK ||
      deflateSetDictionary(&d.zs, kDictionary, sizeof kDictionary) != Z_OK) {
    verbatim(envelope, out);
    return;
  }
  out.assign(1 + bound, 0);
  out[0] = kTagDeflate;
  d.zs.next_in = const_cast<Bytef*>(envelope.data());
  d.zs.avail_in = static_cast<uInt>(envelope.size());
  d.zs.next_out = out.data() + 1;
  d.zs.avail_out = static_cast<uInt>(bound);
  if (deflate(&d.zs, Z_FINISH) != Z_STREAM_END) {
    verbatim(envelope, out);
    return;
  }
  out.resize(1 + (bound - d.zs.avail_out));
  if (out.size() >= 1 + envelope.size()) verbatim(envelope, out);
}

Result<void> decompress_value(std::span<const uint8_t> stored, std::vector<uint8_t>& out) {
  out.clear();
  if (stored.empty()) return fail(ErrorCode::corrupt, "stored event value is empty");
  if (stored[0] == kTagVerbatim) {
    out.assign(stored.begin() + 1, stored.end());
    return {};
  }
  if (stored[0] != kTagDeflate)
    return fail(ErrorCode::corrupt, "stored event value has an unknown format tag");
  thread_local Inflater in;
  if (!in.ok || inflateReset(&in.zs) != Z_OK ||
      inflateSetDictionary(&in.zs, kDictionary, sizeof kDictionary) != Z_OK)
    return fail(ErrorCode::internal, "zlib inflate could not be set up");
  size_t cap = std::max<size_t>(256, stored.size() * 8);
  out.resize(cap);
  in.zs.next_in = const_cast<Bytef*>(stored.data() + 1);
  in.zs.avail_in = static_cast<uInt>(stored.size() - 1);
  in.zs.next_out = out.data();
  in.zs.avail_out = static_cast<uInt>(cap);
  for (;;) {
    int rc = inflate(&in.zs, Z_FINISH);
    if (rc == Z_STREAM_END) break;
    if ((rc == Z_BUF_ERROR || rc == Z_OK) && in.zs.avail_out == 0 && cap < kMaxEnvelope) {
      const size_t used = cap;
      cap *= 2;
      out.resize(cap);
      in.zs.next_out = out.data() + used;
      in.zs.avail_out = static_cast<uInt>(cap - used);
      continue;
    }
    return fail(ErrorCode::corrupt, "stored event value does not decompress");
  }
  if (in.zs.avail_in != 0)
    return fail(ErrorCode::corrupt, "stored event value has bytes after its end");
  out.resize(cap - in.zs.avail_out);
  return {};
}

}  // namespace agentlab::events
