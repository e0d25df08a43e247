#include "events/json.h"

#include <flatbuffers/reflection.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <vector>

#include "events/events_bfbs_generated.h"
#include "events/kinds.h"

namespace agentlab::events {
namespace {

using json = nlohmann::ordered_json;

// The embedded binary schema: payloads render through reflection, so a kind added to the
// schema renders without touching this file.
const reflection::Schema& schema() {
  static const reflection::Schema* s = reflection::GetSchema(fb::EnvelopeBinarySchema::data());
  return *s;
}

// Enums the API and the CLI already spell one way (states upper-case, steps and aggregate
// types lower-case) are rendered that way inside payloads too; others by their schema name.
std::string enum_value_name(const reflection::Enum& e, int64_t value) {
  const std::string_view name = e.name()->string_view();
  auto is = [&](std::string_view type) {
    return name.size() >= type.size() && name.substr(name.size() - type.size()) == type &&
           (name.size() == type.size() || name[name.size() - type.size() - 1] == '.');
  };
  if (is("SandboxStateCode"))
    return std::string(sandbox_state_name(static_cast<fb::SandboxStateCode>(value)));
  if (is("JobStatusCode"))
    return std::string(job_status_name(static_cast<fb::JobStatusCode>(value)));
  if (is("Step")) return std::string(step_name(static_cast<fb::Step>(value)));
  if (is("AggregateType"))
    return std::string(aggregate_type_name(static_cast<fb::AggregateType>(value)));
  for (const auto* v : *e.values())
    if (v->value() == value) return v->name()->str();
  return std::to_string(value);
}

json render_table(const reflection::Object& object, const flatbuffers::Table& table);

json render_scalar(const reflection::Field& field, const flatbuffers::Table& table) {
  const auto* type = field.type();
  auto base = type->base_type();
  if (base == reflection::Bool) return flatbuffers::GetFieldI<uint8_t>(table, field) != 0;
  if (base == reflection::Float || base == reflection::Double)
    return flatbuffers::GetAnyFieldF(table, field);
  int64_t v = flatbuffers::GetAnyFieldI(table, field);
  if (type->index() >= 0) return enum_value_name(*schema().enums()->Get(type->index()), v);
  if (base == reflection::ULong) return static_cast<uint64_t>(v);
  return v;
}

json render_vector(const reflection::Field& field, const flatbuffers::Table& table) {
  json out = json::array();
  const auto* type = field.type();
  auto elem = type->element();
  if (elem == reflection::String) {
    const auto* vec =
        table.GetPointer<const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>*>(
            field.offset());
    for (const auto* s : *vec) out.push_back(s->str());
  } else if (elem == reflection::Obj) {
    const auto& object = *schema().objects()->Get(type->index());
    const auto* vec =
        table.GetPointer<const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::Table>>*>(
            field.offset());
    for (const auto* t : *vec) out.push_back(render_table(object, *t));
  } else {
    const auto* vec = flatbuffers::GetFieldAnyV(table, field);
    for (flatbuffers::uoffset_t i = 0; i < vec->size(); ++i)
      out.push_back(flatbuffers::GetAnyVectorElemI(vec, elem, i));
  }
  return out;
}

json render_table(const reflection::Object& object, const flatbuffers::Table& table) {
  std::vector<const reflection::Field*> fields(object.fields()->begin(), object.fields()->end());
  std::sort(fields.begin(), fields.end(),
            [](const auto* a, const auto* b) { return a->id() < b->id(); });
  json out = json::object();
  for (const auto* field : fields) {
    if (field->deprecated() || !table.CheckField(field->offset())) continue;
    const auto base = field->type()->base_type();
    const std::string name = field->name()->str();
    switch (base) {
      case reflection::UType:
        break;  // rendered through the union field itself
      case reflection::String: {
        const auto* s = table.GetPointer<const flatbuffers::String*>(field->offset());
        if (s != nullptr && s->size() > 0) out[name] = s->str();
        break;
      }
      case reflection::Vector: {
        json v = render_vector(*field, table);
        if (!v.empty()) out[name] = std::move(v);
        break;
      }
      case reflection::Obj: {
        const auto* sub = table.GetPointer<const flatbuffers::Table*>(field->offset());
        if (sub != nullptr)
          out[name] = render_table(*schema().objects()->Get(field->type()->index()), *sub);
        break;
      }
      case reflection::Union: {
        const auto& union_object = flatbuffers::GetUnionType(schema(), object, *field, table);
        const auto* sub = table.GetPointer<const flatbuffers::Table*>(field->offset());
        if (sub != nullptr) out[name] = render_table(union_object, *sub);
        break;
      }
      default:
        out[name] = render_scalar(*field, table);
    }
  }
  return out;
}

const reflection::Object& envelope_object() {
  static const reflection::Object* obj = schema().root_table();
  return *obj;
}

std::string seconds_text(int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fs", static_cast<double>(ns) / 1e9);
  return buf;
}

// The reference's human message for the kinds it had, and a short one for ours.
std::string message_of(const fb::Envelope& e) {
  switch (e.kind()) {
    case fb::EventKind::SandboxState:
      if (const auto* p = e.payload_as_SandboxStateChanged()) {
        std::string m = std::string(sandbox_state_name(p->from())) + " -> " +
                        std::string(sandbox_state_name(p->to()));
        return m;
      }
      break;
    case fb::EventKind::SandboxLease:
      if (const auto* p = e.payload_as_SandboxLease())
        return "renewed until " + format_rfc3339_nano(p->expires_ns());
      break;
    case fb::EventKind::ArtifactUpload:
      if (const auto* p = e.payload_as_ArtifactUploaded())
        return "artifact uploaded: " + (p->path() ? p->path()->str() : std::string());
      break;
    case fb::EventKind::ArtifactGc:
      if (const auto* p = e.payload_as_ArtifactGc()) {
        std::string name = p->name() && p->name()->size() ? p->name()->str()
                           : p->path()                    ? p->path()->str()
                                                          : std::string();
        return name.empty() ? "artifact GC removed" : "artifact GC removed " + name;
      }
      break;
    case fb::EventKind::JobRunning:
      return "sandbox running";
    case fb::EventKind::StepCompleted:
    case fb::EventKind::StepFailed:
    case fb::EventKind::StepIgnored:
    case fb::EventKind::StepRequested:
      if (const auto* p = e.payload_as_StepResult()) {
        std::string m(step_name(p->step()));
        if (e.kind() == fb::EventKind::StepRequested) return m + " requested";
        m += e.kind() == fb::EventKind::StepCompleted ? " completed in "
             : e.kind() == fb::EventKind::StepFailed  ? " failed after "
                                                      : " ignored after ";
        m += seconds_text(p->duration_ns());
        if (p->detail() && p->detail()->size()) m += ": " + p->detail()->str();
        return m;
      }
      break;
    default:
      break;
  }
  if (const auto* p = e.payload_as_Message())
    if (p->message()) return p->message()->str();
  if (const auto* p = e.payload_as_JobReport())
    if (p->message()) return p->message()->str();
  return {};
}

std::string stage_of(const fb::Envelope& e) {
  if (const auto* p = e.payload_as_SandboxStateChanged())
    return std::string(sandbox_state_name(p->to()));
  if (const auto* p = e.payload_as_JobReport()) return std::string(job_status_name(p->status()));
  if (const auto* p = e.payload_as_StepResult()) return std::string(step_name(p->step()));
  switch (e.kind()) {
    case fb::EventKind::JobCreated:
    case fb::EventKind::JobQueued:
      return "QUEUED";
    case fb::EventKind::JobRunning:
      return "RUNNING";
    case fb::EventKind::JobFailed:
      return "FAILED";
    case fb::EventKind::JobTimedOut:
      return "TIMEOUT";
    case fb::EventKind::JobCompleted:
      return "COMPLETED";
    case fb::EventKind::SandboxCreated:
      return "REQUESTED";
    default:
      return {};
  }
}

// The VMID / job id an event concerns, from its aggregate or related refs (reference fields).
std::string ref_id(const fb::Envelope& e, fb::AggregateType type) {
  if (e.aggregate_type() == type && e.aggregate_id()) return e.aggregate_id()->str();
  if (e.related())
    for (const auto* r : *e.related())
      if (r->type() == type && r->id()) return r->id()->str();
  return {};
}

}  // namespace

std::string format_rfc3339_nano(int64_t wall_ns) {
  int64_t secs = wall_ns / 1'000'000'000;
  int64_t frac = wall_ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    secs -= 1;
  }
  time_t t = static_cast<time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  if (frac != 0) {
    char fb_[16];
    std::snprintf(fb_, sizeof fb_, ".%09lld", static_cast<long long>(frac));
    std::string f(fb_);
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  out += 'Z';
  return out;
}

nlohmann::ordered_json to_json(const StoredEvent& event) {
  const fb::Envelope& e = *event.envelope();
  json out = json::object();
  out["id"] = event.seq;
  out["seq"] = event.seq;
  out["ts"] = format_rfc3339_nano(e.wall_ns());
  out["kind"] = kind_name(e);
  out["schema_version"] = e.schema_version();
  if (std::string stage = stage_of(e); !stage.empty()) out["stage"] = std::move(stage);
  json aggregate = json::object();
  aggregate["type"] = std::string(aggregate_type_name(e.aggregate_type()));
  aggregate["id"] = e.aggregate_id() ? e.aggregate_id()->str() : std::string();
  out["aggregate"] = std::move(aggregate);
  if (std::string vmid = ref_id(e, fb::AggregateType::Sandbox); !vmid.empty()) {
    char* end = nullptr;
    long long v = std::strtoll(vmid.c_str(), &end, 10);
    if (end != nullptr && *end == '\0') out["sandbox_vmid"] = v;
  }
  if (std::string job = ref_id(e, fb::AggregateType::Job); !job.empty()) out["job_id"] = job;
  if (std::string msg = message_of(e); !msg.empty()) out["msg"] = std::move(msg);
  if (e.cause_seq() != 0) out["cause_seq"] = e.cause_seq();
  if (e.request_id() && e.request_id()->size()) out["request_id"] = e.request_id()->str();
  if (e.related() && e.related()->size()) {
    json related = json::array();
    for (const auto* r : *e.related())
      related.push_back({{"type", std::string(aggregate_type_name(r->type()))},
                         {"id", r->id() ? r->id()->str() : std::string()}});
    out["related"] = std::move(related);
  }
  // The payload through reflection; an unknown union member (newer writer) renders as {}.
  const auto& env_obj = envelope_object();
  const auto* payload_field = env_obj.fields()->LookupByKey("payload");
  json payload = json::object();
  if (payload_field != nullptr && e.payload() != nullptr &&
      static_cast<size_t>(e.payload_type()) <
          schema().enums()->Get(payload_field->type()->index())->values()->size()) {
    const auto& table = *reinterpret_cast<const flatbuffers::Table*>(&e);
    const auto& union_obj = flatbuffers::GetUnionType(schema(), env_obj, *payload_field, table);
    payload = render_table(union_obj, *static_cast<const flatbuffers::Table*>(e.payload()));
  }
  out["payload"] = std::move(payload);
  return out;
}

}  // namespace agentlab::events
