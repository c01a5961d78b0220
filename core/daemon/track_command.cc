#include "core/daemon/track_command.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <zstd.h>

#include "core/daemon/config.h"
#include "queue/inspect.h"
#include "queue/suppression_csv.h"

#include <nlohmann/json.hpp>

namespace spate::daemon {

namespace {

constexpr const char* kUsage =
    "usage: spate track ID [--config FILE] [--spool DIR] [--records FILE] [--json]\n"
    "  The status of each recipient of message ID (as in \"queued as ID\"), from the spool\n"
    "  and the accounting records ([log] records; a relative path is from the current\n"
    "  directory, as spate's own: run it where spate runs, or give --records).\n";

using Json = nlohmann::json;

// Calls `line` for each line of a records file, plain or zstd-compressed (".zst").
void ReadLines(const std::filesystem::path& file,
               const std::function<void(std::string_view)>& line) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    return;
  std::string pending;
  auto feed = [&](const char* data, size_t n) {
    pending.append(data, n);
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
      line(std::string_view(pending).substr(start, nl - start));
    pending.erase(0, start);
  };
  std::vector<char> buf(1 << 16);
  if (file.extension() != ".zst") {
    while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0)
      feed(buf.data(), static_cast<size_t>(in.gcount()));
  } else {
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    std::vector<char> out(ZSTD_DStreamOutSize());
    while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
      ZSTD_inBuffer input{buf.data(), static_cast<size_t>(in.gcount()), 0};
      while (input.pos < input.size) {
        ZSTD_outBuffer output{out.data(), out.size(), 0};
        if (ZSTD_isError(ZSTD_decompressStream(dctx, &output, &input)))
          break;  // a damaged file: what came before it counts
        feed(out.data(), output.pos);
      }
    }
    ZSTD_freeDCtx(dctx);
  }
  if (!pending.empty())
    line(pending);  // a last line without its newline (a file being written)
}

// The live records file and its rotated ones (PATH.*), oldest first.
std::vector<std::filesystem::path> RecordsFiles(const std::string& path) {
  namespace fs = std::filesystem;
  std::vector<fs::path> rotated;
  const fs::path live(path);
  std::error_code ec;
  const fs::path dir = live.has_parent_path() ? live.parent_path() : fs::path(".");
  const std::string prefix = live.filename().string() + ".";
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with(prefix) && !name.ends_with(".tmp"))
      rotated.push_back(e.path());
  }
  // PATH.YYYYMMDDTHHMMSS[.N][.zst] (core/journal.h): by time, then N as a number (.10 after
  // .9), the file without N first.
  auto key = [&](const fs::path& p) {
    std::string rest = p.filename().string().substr(prefix.size());
    if (rest.ends_with(".zst"))
      rest.resize(rest.size() - 4);
    const size_t dot = rest.find('.');
    const std::string stamp = rest.substr(0, dot);
    const unsigned long n =
        dot == std::string::npos ? 0 : std::strtoul(rest.c_str() + dot + 1, nullptr, 10) + 1;
    return std::pair(stamp, n);
  };
  std::sort(rotated.begin(), rotated.end(),
            [&](const fs::path& a, const fs::path& b) { return key(a) < key(b); });
  if (fs::exists(live, ec))
    rotated.push_back(live);
  return rotated;
}

// A field of a record, or `fallback` when it is missing or of another type: a hand-edited or
// foreign line must not stop the command (nlohmann-json's value() would throw).
std::string Str(const Json& j, const char* key, std::string fallback = {}) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}
int64_t Int(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}
const Json* Obj(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? &*it : nullptr;
}

std::string Time(int64_t ms) {
  return ms > 0 ? queue::FormatRfc3339(ms) : std::string("?");
}

struct Status {
  std::string recipient;
  std::string status;  // delivered, bounced, expired, deferred, queued
  uint64_t attempts = 0;
  int64_t next_attempt_ms = 0;
  int64_t time_ms = 0;
  Json reply;
  std::string klass;
  std::string peer;
  Json events = Json::array();
};

std::string ReplyText(const Json& reply) {
  if (!reply.is_object())
    return {};
  std::string out = std::to_string(Int(reply, "code"));
  if (const std::string e = Str(reply, "enhanced"); !e.empty())
    out += " " + e;
  out += " " + Str(reply, "text");
  return out;
}

// Both sources, merged: the head and each recipient's status (false: the message is in
// neither; *error says where it was looked for).
bool Track(const std::string& spool, const std::string& records, queue::MessageId id,
           Json* head_out, std::vector<Status>* out_out, std::string* error) {
  const std::string hex = queue::FormatId(id);

  // The records of this message, in the order they were written.
  std::vector<Json> events;
  if (!records.empty()) {
    const std::string needle = "\"id\":\"" + hex + "\"";
    for (const auto& file : RecordsFiles(records)) {
      ReadLines(file, [&](std::string_view line) {
        if (line.find(needle) == std::string_view::npos)
          return;
        Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && Str(j, "id") == hex)
          events.push_back(std::move(j));
      });
    }
  }
  auto spooled = queue::InspectSpoolMessage(spool, id, error);
  if (!spooled && events.empty()) {
    *error = "no message " + hex + " in the spool (" + spool + ") or the records (" +
             (records.empty() ? std::string("off") : records) + ")";
    return false;
  }

  // Per recipient, in the message's order: from the spool when it is there, else from the
  // Reception records.
  std::vector<Status> out;
  std::map<std::string, size_t> by_address;
  auto status_of = [&](const std::string& address) -> Status& {
    auto [it, fresh] = by_address.emplace(address, out.size());
    if (fresh) {
      out.push_back({});
      out.back().recipient = address;
      out.back().status = "queued";
    }
    return out[it->second];
  };
  Json head = {{"id", hex}};
  if (spooled) {
    head["sender"] = spooled->mail_from;
    head["received"] = spooled->received_ms;
    if (!spooled->campaign.empty())
      head["campaign"] = spooled->campaign;
    for (const queue::SpooledRecipient& r : spooled->recipients)
      status_of(r.address);
  }
  // A field of the wrong type (a hand-edited or foreign file) counts as absent.
  for (const Json& e : events) {
    const std::string type = Str(e, "type");
    if (type == "DSN")
      continue;  // about the sender, not a recipient
    if (type == "Reception" && !head.contains("sender")) {
      head["sender"] = Str(e, "sender");
      head["received"] = Int(e, "queued");
      if (const std::string c = Str(e, "campaign"); !c.empty())
        head["campaign"] = c;
    }
    const std::string rcpt = Str(e, "recipient");
    if (rcpt.empty())
      continue;
    Status& s = status_of(rcpt);
    s.events.push_back(e);
    if (type == "Reception")
      continue;
    s.attempts = std::max<uint64_t>(
        s.attempts, static_cast<uint64_t>(std::max<int64_t>(0, Int(e, "attempts"))));
    s.time_ms = Int(e, "time");
    const Json* reply = Obj(e, "reply");
    s.reply = reply != nullptr ? *reply : Json();
    s.klass = Str(e, "class");
    const Json* peer = Obj(e, "peer");
    s.peer = peer != nullptr ? Str(*peer, "name", Str(*peer, "address")) : "";
    if (type == "Delivery")
      s.status = "delivered";
    else if (type == "Bounce" || type == "AdminBounce")
      s.status = "bounced";
    else if (type == "Expiration")
      s.status = "expired";
    else if (type == "TransientFailure")
      s.status = "deferred";
  }
  if (spooled) {
    // The spool knows best what is still to come.
    for (const queue::SpooledRecipient& r : spooled->recipients) {
      Status& s = status_of(r.address);
      if (r.state == queue::SpooledRecipient::State::kDeferred) {
        s.status = "deferred";
        s.attempts = std::max<uint64_t>(s.attempts, r.attempts);
        s.next_attempt_ms = r.next_attempt_ms;
      } else if (r.state == queue::SpooledRecipient::State::kPending && s.status != "deferred") {
        s.status = "queued";
      }
    }
  }

  head["in_spool"] = spooled.has_value();
  *head_out = std::move(head);
  *out_out = std::move(out);
  return true;
}

Json ToJson(Json head, const std::vector<Status>& out) {
  Json list = Json::array();
  for (const Status& s : out) {
    Json j = {{"recipient", s.recipient}, {"status", s.status}, {"attempts", s.attempts}};
    if (s.next_attempt_ms > 0)
      j["next_attempt"] = s.next_attempt_ms;
    if (s.time_ms > 0)
      j["time"] = s.time_ms;
    if (!s.reply.is_null())
      j["reply"] = s.reply;
    if (!s.klass.empty())
      j["class"] = s.klass;
    j["events"] = s.events;
    list.push_back(std::move(j));
  }
  head["recipients"] = std::move(list);
  return head;
}

}  // namespace

std::optional<nlohmann::json> TrackMessage(const std::string& spool, const std::string& records,
                                           queue::MessageId id, std::string* error) {
  Json head;
  std::vector<Status> out;
  if (!Track(spool, records, id, &head, &out, error))
    return std::nullopt;
  return ToJson(std::move(head), out);
}

int TrackCommand(int argc, char** argv) {
  std::string id_text, config_path, spool, records;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--config" || a == "--spool" || a == "--records") && i + 1 < argc) {
      (a == "--config" ? config_path : a == "--spool" ? spool : records) = argv[++i];
    } else if (a == "--json") {
      json = true;
    } else if (!a.empty() && a[0] != '-' && id_text.empty()) {
      id_text = a;
    } else {
      std::fputs(kUsage, stderr);
      return 2;
    }
  }
  auto id = queue::ParseId(id_text);
  if (!id) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::string config_error;
  auto config = LoadConfig(config_path, &config_error);
  if (!config) {
    std::fprintf(stderr, "spate: configuration: %s\n", config_error.c_str());
    return 2;
  }
  if (spool.empty())
    spool = config->spool_path;
  if (records.empty())
    records = config->records;
  std::string error;
  Json head;
  std::vector<Status> out;
  if (!Track(spool, records, *id, &head, &out, &error)) {
    std::fprintf(stderr, "spate: track: %s\n", error.c_str());
    return 1;
  }
  if (json) {
    std::printf(
        "%s\n",
        ToJson(std::move(head), out).dump(-1, ' ', false, Json::error_handler_t::replace).c_str());
    return 0;
  }
  std::printf("message %s from <%s> received %s%s%s\n", Str(head, "id").c_str(),
              Str(head, "sender").c_str(), Time(Int(head, "received")).c_str(),
              head.contains("campaign") ? " campaign " : "", Str(head, "campaign").c_str());
  for (const Status& s : out) {
    std::string line = s.recipient + " " + s.status;
    if (s.attempts > 0)
      line += " attempts=" + std::to_string(s.attempts);
    if (s.status == "deferred" && s.next_attempt_ms > 0)
      line += " next=\"" + Time(s.next_attempt_ms) + "\"";
    else if (s.time_ms > 0)
      line += " at=\"" + Time(s.time_ms) + "\"";
    if (!s.peer.empty())
      line += " peer=" + s.peer;
    if (!s.klass.empty())
      line += " class=" + s.klass;
    if (!s.reply.is_null())
      line += " reply=\"" + ReplyText(s.reply) + "\"";
    std::printf("  %s\n", line.c_str());
  }
  return 0;
}

}  // namespace spate::daemon
