#include "core/daemon/admin_api.h"

#include <algorithm>
#include <cctype>
#include <csignal>
#include <map>
#include <optional>
#include <sstream>
#include <utility>

#include <unistd.h>

#include "core/clock.h"
#include "core/counter.h"
#include "core/daemon/config.h"
#include "core/daemon/track_command.h"
#include "core/log.h"
#include "queue/inspect.h"
#include "queue/suppression.h"

#include <nlohmann/json.hpp>

namespace spate::daemon {

namespace {

using Json = nlohmann::json;
using delivery::Control;

constexpr std::string_view kControlPrefix = "control/";
// An operator's bounce lasts this long unless told: what arrives meanwhile is bounced too
// (KumoMTA's default), so mail in flight when it was asked for does not slip through.
constexpr int64_t kBounceDefaultMs = 5 * 60 * 1000;

http::Response Ok(const Json& body, int status = 200) {
  http::Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  return r;
}

http::Response Error(int status, const std::string& text, const std::string& field = {}) {
  return AdminServer::Error(status, text, field);
}

int Hex(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// RFC 3986 §2.1 percent-decoding ('+' stays '+': this is a query of names, not a form).
std::optional<std::string> Decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size())
      return std::nullopt;
    const int hi = Hex(s[i + 1]);
    const int lo = Hex(s[i + 2]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// The query's parameters, decoded; a malformed one or one not in `allowed` is an error naming
// it.
bool ParseQuery(const std::string& query, const std::vector<std::string_view>& allowed,
                std::map<std::string, std::string>* out, http::Response* error) {
  for (size_t start = 0; start < query.size();) {
    size_t end = query.find('&', start);
    if (end == std::string::npos)
      end = query.size();
    const std::string_view kv = std::string_view(query).substr(start, end - start);
    start = end + 1;
    if (kv.empty())
      continue;
    const size_t eq = kv.find('=');
    const std::string name(kv.substr(0, eq));
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      *error = Error(400, "unknown parameter \"" + name + "\"", name);
      return false;
    }
    std::optional<std::string> value =
        Decode(eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1));
    if (!value) {
      *error = Error(400, "a bad percent-escape", name);
      return false;
    }
    (*out)[name] = std::move(*value);
  }
  return true;
}

std::string Lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Json ControlJson(const Control& c) {
  Json j = {{"scope", delivery::ScopeName(c.scope)},
            {"name", c.name},
            {"reason", c.reason},
            {"since", queue::FormatRfc3339(c.since_ms)},
            {"until", nullptr}};
  if (c.until_ms > 0)
    j["until"] = queue::FormatRfc3339(c.until_ms);
  return j;
}

std::string ControlKey(const Control& c) {
  return std::string(kControlPrefix) + std::string(delivery::ActionName(c.action)) + "/" +
         std::string(delivery::ScopeName(c.scope)) + "/" + c.name;
}

// A name as an operator may give it: no controls, no blanks, no slash (keys use it), bounded.
bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 255)
    return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    return static_cast<unsigned char>(c) <= ' ' || c == 0x7f || c == '/';
  });
}

}  // namespace

AdminApi::AdminApi(Context context) : ctx_(std::move(context)) {
  worker_ = std::thread([this] {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !work_.empty(); });
        if (stopping_)
          return;
        job = std::move(work_.front());
        work_.pop_front();
      }
      job();
    }
  });
}

AdminApi::~AdminApi() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    work_.clear();
  }
  cv_.notify_one();
  worker_.join();
}

void AdminApi::Offload(std::function<http::Response()> work, AdminServer::Respond respond) {
  // The answer is made on the worker and posted back: the respond callback is the reactor's.
  auto shared = std::make_shared<AdminServer::Respond>(std::move(respond));
  {
    std::lock_guard lock(mu_);
    work_.push_back([this, work = std::move(work), shared] {
      http::Response resp;
      try {
        resp = work();
      } catch (const std::bad_alloc&) {
        // A request too large to build in the memory there is: its answer, not the daemon's end.
        resp = AdminServer::Error(500, "out of memory answering this request");
      } catch (const std::exception& e) {
        resp = AdminServer::Error(500, std::string("internal error: ") + e.what());
      }
      ctx_.reactor->Post(
          [shared, resp = std::move(resp)]() mutable { (*shared)(std::move(resp)); });
    });
  }
  cv_.notify_one();
}

std::optional<Control> AdminApi::DecodeControl(std::string_view key, std::string_view value) {
  // control/ACTION/SCOPE/NAME -> {"reason", "since_ms", "until_ms"}
  if (key.substr(0, kControlPrefix.size()) != kControlPrefix)
    return std::nullopt;
  const std::string_view rest = key.substr(kControlPrefix.size());
  const size_t a = rest.find('/');
  const size_t b = a == std::string_view::npos ? a : rest.find('/', a + 1);
  Json j = Json::parse(value, nullptr, /*allow_exceptions=*/false);
  std::optional<Control::Action> action;
  std::optional<Control::Scope> scope;
  if (b != std::string_view::npos) {
    action = delivery::ParseAction(rest.substr(0, a));
    scope = delivery::ParseScope(rest.substr(a + 1, b - a - 1));
  }
  if (!action || !scope || !j.is_object() || !j.value("since_ms", Json()).is_number_integer() ||
      !j.value("until_ms", Json()).is_number_integer() || !j.value("reason", Json()).is_string())
    return std::nullopt;
  return Control{*action,
                 *scope,
                 std::string(rest.substr(b + 1)),
                 j["reason"].get<std::string>(),
                 j["since_ms"].get<int64_t>(),
                 j["until_ms"].get<int64_t>()};
}

size_t AdminApi::LoadControls(queue::Spool& spool, delivery::Controls& controls, int64_t now_ms) {
  auto entries = spool.ReadState(kControlPrefix);
  if (!entries) {
    SPATE_LOG(kError, "admin: the suspensions kept in the spool cannot be read: %s",
              entries.error().message().c_str());
    return 0;
  }
  size_t n = 0;
  for (const auto& [key, value] : *entries) {
    std::optional<Control> c = DecodeControl(key, value);
    if (!c) {
      SPATE_LOG(kWarn, "admin: a kept suspension does not decode (%s); removed", key.c_str());
      spool.PutState(key, std::nullopt);
      continue;
    }
    if (!c->live(now_ms)) {
      spool.PutState(key, std::nullopt);
      continue;
    }
    controls.Set(std::move(*c));
    ++n;
  }
  return n;
}

void AdminApi::Persist(const Control& c, bool lifted) {
  std::optional<std::string> value;
  if (!lifted)
    value = Json({{"reason", c.reason}, {"since_ms", c.since_ms}, {"until_ms", c.until_ms}}).dump();
  ctx_.spool->PutState(ControlKey(c), value);
  if (ctx_.share_control)
    ctx_.share_control(ControlKey(c), value);  // [cluster]: the other nodes apply it too
}

http::Response AdminApi::DrainState() const {
  // Pending: messages with a recipient not yet delivered or bounced (deferred ones included):
  // the node is empty when none is left and no client is still sending.
  const uint64_t pending = ctx_.spool->stats().pending_messages;
  int64_t inbound = 0;
  if (ctx_.server_stats != nullptr) {
    for (const auto& s : *ctx_.server_stats)
      inbound += s->connections_inbound.Get();
  }
  const bool draining = ctx_.draining != nullptr && ctx_.draining->load();
  return Ok({{"draining", draining},
             {"pending_messages", pending},
             {"inbound_connections", inbound},
             {"drained", draining && pending == 0 && inbound == 0}});
}

void AdminApi::Handle(const http::Request& r, AdminServer::Respond respond) {
  const std::string& p = r.path;
  auto method = [&](std::initializer_list<std::string_view> allowed) {
    for (std::string_view m : allowed) {
      if (r.method == m)
        return true;
    }
    std::string list;
    for (std::string_view m : allowed)
      list += (list.empty() ? "" : " or ") + std::string(m);
    respond(Error(405, "use " + list));
    return false;
  };
  if (p == "/api/inject/v1") {
    if (!ctx_.inject)
      return respond(Error(404, "HTTP injection is off ([inject] enabled)", "path"));
    if (method({"POST"}))
      ctx_.inject(r, std::move(respond));
    return;
  }
  if (p == "/api/admin/v1/drain") {
    if (!ctx_.drain)
      return respond(Error(404, "no drain on this server", "path"));
    if (!method({"GET", "POST"}))
      return;
    if (r.method == "POST" && !ctx_.draining->load()) {
      SPATE_LOG(kInfo,
                "admin: drain: no new connections or injections; delivering what is "
                "held");
      ctx_.drain();
    }
    return respond(DrainState());
  }
  if (p == "/api/admin/v1/queue") {
    if (method({"GET"}))
      Queue(r, std::move(respond));
    return;
  }
  if (p == "/api/admin/v1/suspend" || p == "/api/admin/v1/bounce") {
    if (method({"POST"}))
      Suspend(r, std::move(respond), p.ends_with("bounce"));
    return;
  }
  if (p == "/api/admin/v1/resume") {
    if (method({"POST"}))
      Resume(r, std::move(respond));
    return;
  }
  if (p == "/api/admin/v1/suspensions") {
    if (!method({"GET"}))
      return;
    Json list = Json::array();
    for (const Control& c : ctx_.controls->List(Clock::Real().WallMs())) {
      if (c.action == Control::Action::kSuspend)
        list.push_back(ControlJson(c));
    }
    return respond(Ok({{"suspensions", std::move(list)}}));
  }
  if (p == "/api/admin/v1/flush") {
    if (!method({"POST"}))
      return;
    std::map<std::string, std::string> q;
    http::Response bad;
    if (!ParseQuery(r.query, {"domain"}, &q, &bad))
      return respond(std::move(bad));
    std::string domain = Lower(q["domain"]);
    if (q.count("domain") != 0 && !ValidName(domain))
      return respond(Error(400, "domain must be a domain name", "domain"));
    ctx_.each_shard(
        [domain](delivery::Delivery& d) {
          const size_t n = d.Flush(domain);
          if (n > 0) {
            SPATE_LOG(kInfo, "admin: flush: %zu deferred jobs of %s tried now", n,
                      domain.empty() ? "every domain" : domain.c_str());
          }
          return n;
        },
        [](size_t) {});
    return respond(Ok({{"flush", "requested"}, {"domain", domain.empty() ? "*" : domain}}, 202));
  }
  if (p == "/api/admin/v1/reload") {
    if (!method({"POST"}))
      return;
    kill(getpid(), SIGHUP);  // the main thread reloads, as for an operator's SIGHUP
    return respond(
        Ok({{"reload", "requested"}, {"see", "the log: spate: reloaded, or reload refused"}}, 202));
  }
  if (p == "/api/admin/v1/message") {
    if (method({"GET"}))
      Message(r, std::move(respond));
    return;
  }
  if (p.starts_with("/api/admin/v1/suppression")) {
    Suppression(r, std::move(respond));
    return;
  }
  respond(Error(404, "no such endpoint: " + p, "path"));
}

void AdminApi::Queue(const http::Request& r, AdminServer::Respond respond) {
  std::map<std::string, std::string> q;
  http::Response bad;
  if (!ParseQuery(r.query, {"by"}, &q, &bad))
    return respond(std::move(bad));
  const std::string by = q.count("by") != 0 ? q["by"] : "domain";
  if (by != "domain" && by != "site" && by != "campaign")
    return respond(Error(400, "by must be domain, site or campaign, not \"" + by + "\"", "by"));
  struct Row {
    int64_t queued = 0;
    int64_t in_flight = 0;
    int64_t connections = 0;
    int64_t suspended = 0;
    int64_t oldest_ms = 0;
    uint64_t delivered = 0;
    uint64_t deferred = 0;
    uint64_t failed = 0;
  };
  std::map<std::string, Row> rows;
  for (const auto& d : *ctx_.stats) {
    auto add = [&](const delivery::DomainStats& ds) {
      Row& row = rows[ds.domain];
      if (by == "site") {
        for (const Gauge& g : ds.queued_by_priority)
          row.queued += g.Get();
        row.suspended += ds.suspended.Get();
      } else {
        row.queued += ds.queued.Get();
      }
      row.in_flight += ds.in_flight.Get();
      row.connections += ds.connections.Get();
      row.delivered += ds.delivered.Get();
      row.deferred += ds.deferred.Get();
      row.failed += ds.failed.Get();
    };
    if (by == "site")
      d->ForEachSite(add);
    else if (by == "campaign")
      d->ForEachCampaign(add);
    else
      d->ForEachDomain(add);
  }
  if (by == "domain") {
    ctx_.ages->ForEachOldest([&](const std::string& domain, int64_t ms) {
      auto it = rows.find(domain);
      if (it != rows.end() && (it->second.oldest_ms == 0 || ms < it->second.oldest_ms))
        it->second.oldest_ms = ms;
    });
  }
  const int64_t now = Clock::Real().WallMs();
  const Control::Scope scope = by == "site"       ? Control::Scope::kSite
                               : by == "campaign" ? Control::Scope::kCampaign
                                                  : Control::Scope::kDomain;
  // Suspended by an operator (a site's automation counts in its stats); a suspended name with
  // nothing counted yet is a row too: the operator sees it took.
  for (const Control& c : ctx_.controls->List(now)) {
    if (c.action == Control::Action::kSuspend && c.scope == scope)
      rows[c.name].suspended = 1;
  }
  std::vector<std::pair<std::string, Row>> sorted(rows.begin(), rows.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second.queued > b.second.queued; });
  Json out = {{"by", by}, {"rows", Json::array()}};
  for (const auto& [name, row] : sorted) {
    if (row.queued == 0 && row.connections == 0 && row.suspended == 0 && row.in_flight == 0 &&
        row.delivered + row.deferred + row.failed == 0) {
      continue;  // a name seen once and forgotten
    }
    Json j = {{"name", name},
              {"queued", row.queued},
              {"in_flight", row.in_flight},
              {"connections", row.connections},
              {"suspended", row.suspended > 0},
              {"delivered", row.delivered},
              {"deferred", row.deferred},
              {"failed", row.failed}};
    if (row.oldest_ms > 0)
      j["oldest_age_seconds"] = std::max<int64_t>(0, now - row.oldest_ms) / 1000;
    out["rows"].push_back(std::move(j));
  }
  respond(Ok(out));
}

void AdminApi::Suspend(const http::Request& r, AdminServer::Respond respond, bool bounce) {
  Json body = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object())
    return respond(Error(400, "the body must be a JSON object", "body"));
  std::optional<Control::Scope> scope;
  std::string name;
  for (const char* key : {"domain", "site", "campaign"}) {
    if (!body.contains(key))
      continue;
    if (scope)
      return respond(Error(400, "give one of domain, site or campaign", key));
    if (bounce && std::string_view(key) == "site")
      return respond(Error(400, "a bounce is by domain or campaign", "site"));
    if (!body[key].is_string())
      return respond(Error(400, std::string(key) + " must be a string", key));
    scope = delivery::ParseScope(key);
    name = body[key].get<std::string>();
    if (*scope == Control::Scope::kDomain)
      name = Lower(name);
    if (!ValidName(name))
      return respond(Error(400, std::string(key) + " must be a name", key));
  }
  if (!scope)
    return respond(
        Error(400, bounce ? "give domain or campaign" : "give domain, site or campaign", "domain"));
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (it.key() != "domain" && it.key() != "site" && it.key() != "campaign" &&
        it.key() != "duration" && it.key() != "reason")
      return respond(Error(400, "unknown field \"" + it.key() + "\"", it.key()));
  }
  std::string reason;
  if (body.contains("reason")) {
    if (!body["reason"].is_string())
      return respond(Error(400, "reason must be a string", "reason"));
    reason = body["reason"].get<std::string>().substr(0, 512);
  }
  const int64_t now = Clock::Real().WallMs();
  int64_t until = bounce ? now + kBounceDefaultMs : 0;
  if (body.contains("duration")) {
    if (!body["duration"].is_string())
      return respond(Error(400, "duration must be a string such as \"1h\"", "duration"));
    auto d = ParseDuration(body["duration"].get<std::string>());
    if (!d || d->count() <= 0)
      return respond(Error(400, "duration: want \"90s\", \"30m\", \"1h\" or \"2d\"", "duration"));
    until = now + static_cast<int64_t>(d->count() * 1000);
  }
  Control c{bounce ? Control::Action::kBounce : Control::Action::kSuspend,
            *scope,
            name,
            reason,
            now,
            until};
  ctx_.controls->Set(c);
  Persist(c, false);
  SPATE_LOG(kWarn, "admin: %s %s %s%s%s%s", bounce ? "bounce" : "suspend",
            std::string(delivery::ScopeName(c.scope)).c_str(), c.name.c_str(),
            until > 0 ? (" until " + queue::FormatRfc3339(until)).c_str() : " until resumed",
            reason.empty() ? "" : ": ", reason.c_str());
  Json head = ControlJson(c);
  ctx_.each_shard([](delivery::Delivery& d) { return d.ApplyControls(); },
                  [respond = std::move(respond), head, bounce](size_t bounced) mutable {
                    if (bounce)
                      respond(Ok({{"bounce", head}, {"bounced", bounced}}));
                    else
                      respond(Ok({{"suspension", head}}, 201));
                  });
}

void AdminApi::Resume(const http::Request& r, AdminServer::Respond respond) {
  Json body = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object())
    return respond(Error(400, "the body must be a JSON object", "body"));
  std::optional<Control::Scope> scope;
  std::string name;
  for (auto it = body.begin(); it != body.end(); ++it) {
    std::optional<Control::Scope> s = delivery::ParseScope(it.key());
    if (!s)
      return respond(Error(400, "unknown field \"" + it.key() + "\"", it.key()));
    if (scope)
      return respond(Error(400, "give one of domain, site or campaign", it.key()));
    if (!it.value().is_string())
      return respond(Error(400, it.key() + " must be a string", it.key()));
    scope = s;
    name = it.value().get<std::string>();
    if (*s == Control::Scope::kDomain)
      name = Lower(name);
  }
  if (!scope)
    return respond(Error(400, "give domain, site or campaign", "domain"));
  const std::string scope_name(delivery::ScopeName(*scope));
  if (!ctx_.controls->Lift(Control::Action::kSuspend, *scope, name))
    return respond(Error(404, scope_name + " " + name + " is not suspended", scope_name));
  Persist({Control::Action::kSuspend, *scope, name, {}, 0, 0}, true);
  SPATE_LOG(kWarn, "admin: resume %s %s", scope_name.c_str(), name.c_str());
  ctx_.each_shard([](delivery::Delivery& d) { return d.ReleaseHeld(); },
                  [respond = std::move(respond), scope_name, name](size_t jobs) mutable {
                    respond(Ok({{"resumed", {{"scope", scope_name}, {"name", name}}},
                                {"released_jobs", jobs}}));
                  });
}

void AdminApi::Message(const http::Request& r, AdminServer::Respond respond) {
  std::map<std::string, std::string> q;
  http::Response bad;
  if (!ParseQuery(r.query, {"id"}, &q, &bad))
    return respond(std::move(bad));
  auto id = queue::ParseId(q["id"]);
  if (!id)
    return respond(Error(400, "id: want the queue id, as in \"queued as ID\"", "id"));
  Offload(
      [this, id = *id] {
        std::string error;
        std::optional<Json> t = TrackMessage(ctx_.spool_path, ctx_.records_path, id, &error);
        if (!t)
          return Error(404, error, "id");
        // The track form, with times in RFC 3339 and each reply as one line.
        Json out = {{"id", (*t)["id"]},
                    {"sender", t->value("sender", "")},
                    {"size", 0},
                    {"campaign", t->value("campaign", "")},
                    {"in_spool", t->value("in_spool", false)}};
        if (t->contains("received") && (*t)["received"].is_number_integer())
          out["received"] = queue::FormatRfc3339((*t)["received"].get<int64_t>());
        Json list = Json::array();
        for (const Json& rc : (*t)["recipients"]) {
          Json j = {{"address", rc.value("recipient", "")},
                    {"status", rc.value("status", "")},
                    {"attempts", rc.value("attempts", 0)}};
          if (rc.contains("next_attempt"))
            j["next_attempt"] = queue::FormatRfc3339(rc["next_attempt"].get<int64_t>());
          if (rc.contains("time"))
            j["at"] = queue::FormatRfc3339(rc["time"].get<int64_t>());
          if (rc.contains("reply") && rc["reply"].is_object()) {
            const Json& rep = rc["reply"];
            std::string text = std::to_string(rep.value("code", 0));
            if (const std::string e = rep.value("enhanced", ""); !e.empty())
              text += " " + e;
            j["reply"] = text + " " + rep.value("text", "");
          }
          if (rc.contains("class"))
            j["class"] = rc["class"];
          j["events"] = rc.value("events", Json::array());
          list.push_back(std::move(j));
        }
        out["recipients"] = std::move(list);
        return Ok(out);
      },
      std::move(respond));
}

void AdminApi::Suppression(const http::Request& r, AdminServer::Respond respond) {
  queue::Suppression& list = ctx_.spool->suppression();
  const int64_t now = Clock::Real().WallMs();
  if (r.path == "/api/admin/v1/suppression/export") {
    if (r.method != "GET")
      return respond(Error(405, "use GET"));
    return Offload(
        [&list] {
          std::ostringstream out;
          list.ExportCsv(out, Clock::Real().WallMs());
          http::Response resp;
          resp.content_type = "text/csv; charset=utf-8";
          resp.body = std::move(out).str();
          return resp;
        },
        std::move(respond));
  }
  if (r.path == "/api/admin/v1/suppression/import") {
    if (r.method != "POST")
      return respond(Error(405, "use POST"));
    if (!list.enabled())
      return respond(Error(409, "the suppression list is off ([suppression] enabled)"));
    return Offload(
        [&list, body = r.body] {
          std::istringstream in(body);
          std::string error;
          Result<size_t> n = list.ImportCsv(in, Clock::Real().WallMs(), &error);
          if (!n)
            return Error(400, error + " (nothing was imported)", "body");
          const size_t lines = static_cast<size_t>(std::count(body.begin(), body.end(), '\n'));
          SPATE_LOG(kInfo, "admin: suppression import: %zu entries", *n);
          return Ok({{"imported", *n},
                     {"skipped", lines > *n + 1 ? lines - *n - 1 : 0},
                     {"errors", Json::array()}});
        },
        std::move(respond));
  }
  if (r.path != "/api/admin/v1/suppression")
    return respond(Error(404, "no such endpoint: " + r.path, "path"));
  if (r.method == "GET" && r.query.find("address=") == std::string::npos) {
    std::map<std::string, std::string> q;
    http::Response bad;
    if (!ParseQuery(r.query, {"limit"}, &q, &bad))
      return respond(std::move(bad));
    size_t limit = SIZE_MAX;
    if (q.count("limit") != 0) {
      const std::string& l = q["limit"];
      if (l.empty() || l.size() > 9 || !std::all_of(l.begin(), l.end(), ::isdigit))
        return respond(Error(400, "limit must be a number", "limit"));
      limit = std::stoul(l);
    }
    return Offload(
        [&list, limit] {
          std::ostringstream csv;
          list.ExportCsv(csv, Clock::Real().WallMs());
          queue::SuppressionCsv parsed = queue::ParseSuppressionCsv(csv.str(), 0);
          Json entries = Json::array();
          for (const queue::SuppressionEntry& e : parsed.entries) {
            if (entries.size() >= limit)
              break;
            entries.push_back({{"address", e.address},
                               {"since", queue::FormatRfc3339(e.since_ms)},
                               {"class", e.klass},
                               {"reason", e.reason}});
          }
          const bool truncated = entries.size() < parsed.entries.size();
          return Ok({{"count", parsed.entries.size()},
                     {"entries", std::move(entries)},
                     {"truncated", truncated}});
        },
        std::move(respond));
  }
  std::string address;
  std::string reason;
  if (r.method == "POST") {
    Json body = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object())
      return respond(Error(400, "the body must be a JSON object", "body"));
    if (!body.contains("address") || !body["address"].is_string())
      return respond(Error(400, "address must be a string", "address"));
    address = body["address"].get<std::string>();
    if (body.contains("reason")) {
      if (!body["reason"].is_string())
        return respond(Error(400, "reason must be a string", "reason"));
      reason = body["reason"].get<std::string>();
    }
  } else if (r.method == "GET" || r.method == "DELETE") {
    std::map<std::string, std::string> q;
    http::Response bad;
    if (!ParseQuery(r.query, {"address"}, &q, &bad))
      return respond(std::move(bad));
    if (q.count("address") == 0)
      return respond(Error(400, "give ?address=ADDRESS", "address"));
    address = q["address"];
  } else {
    return respond(Error(405, "use GET, POST or DELETE"));
  }
  address = queue::NormalizeAddress(address);
  if (!queue::ValidSuppressionAddress(address))
    return respond(Error(400, "not an address: \"" + address + "\"", "address"));
  if (!list.enabled())
    return respond(Error(409, "the suppression list is off ([suppression] enabled)"));
  if (r.method == "DELETE") {
    if (!list.Remove(address))
      return respond(Error(404, address + " is not on the suppression list", "address"));
    return respond(Ok({{"address", address}, {"removed", true}}));
  }
  if (r.method == "POST")
    list.Add({address, now, "Manual", reason});
  std::optional<queue::SuppressionEntry> e = list.Lookup(address, now);
  if (!e)
    return respond(Error(404, address + " is not on the suppression list", "address"));
  respond(Ok({{"address", e->address},
              {"since", queue::FormatRfc3339(e->since_ms)},
              {"class", e->klass},
              {"reason", e->reason}},
             r.method == "POST" ? 201 : 200));
}

}  // namespace spate::daemon
