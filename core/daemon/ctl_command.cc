#include "core/daemon/ctl_command.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/connection.h"
#include "core/daemon/config.h"

#include <nlohmann/json.hpp>

namespace spate::daemon {

namespace {

using nlohmann::json;

constexpr const char* kUsage =
    "usage: spate ctl [--admin HOST:PORT] [--token-file FILE] [--config FILE] [--json] COMMAND\n"
    "  queue [--by domain|site|campaign]   queued and in-flight recipients, oldest age,\n"
    "                                      connections, suspended\n"
    "  top [--interval SECONDS] [--count N] [--by domain|site|campaign]\n"
    "                                      delivered, deferred, failed per second, polled\n"
    "                                      every SECONDS (2), N times (until Ctrl-C)\n"
    "  suspend (--domain D | --site S | --campaign C) [--duration DUR] [--reason TEXT]\n"
    "                                      deliver none of it (for DUR: 90s, 30m, 1h, 2d)\n"
    "  resume (--domain D | --site S | --campaign C)\n"
    "                                      deliver it again\n"
    "  suspensions                         what is suspended, until when, why\n"
    "  bounce (--domain D | --campaign C) [--reason TEXT] [--duration DUR]\n"
    "                                      bounce its queued recipients, and new mail (for DUR)\n"
    "  message ID                          a message and its recipients: status, attempts, reply\n"
    "  reload                              reload the shaping file, the routes and the DKIM keys\n"
    "  flush [--domain D]                  try deferred mail (of D) now\n"
    "  suppression show|remove ADDRESS, suppression add ADDRESS [--reason TEXT]\n"
    "  suppression list [--limit N]        the suppression list (its first N entries)\n"
    "  suppression export [FILE|-]         the suppression list as CSV, to FILE or stdout\n"
    "  suppression import FILE|-           add a CSV's entries (as export writes them)\n"
    "  drain [--timeout DUR]               stop accepting (SMTP, HTTP injection), deliver what\n"
    "                                      is held, and wait until nothing is (at most DUR)\n"
    "  drain status                        whether the node drains, and what it still holds\n";

constexpr int kIdleMs = 30000;  // between two reads (or writes) of one answer, not for all of it
constexpr size_t kMaxHead = 64u << 10;
constexpr size_t kMaxBody = 1u << 30;  // held in memory; export streams instead
constexpr size_t kTopRows = 30;        // on a terminal

volatile std::sig_atomic_t g_interrupted = 0;

void OnInterrupt(int) {
  g_interrupted = 1;
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct Call {
  std::string method = "GET";
  std::string target;
  std::string body;
  std::string content_type = "application/json";  // of `body`; sent with POST
  std::string accept = "application/json";
  // When set, a 2xx answer's body is written to the stream it returns (nullptr: give up, with
  // *error set) instead of to Reply::body; the caller closes it.
  std::function<std::FILE*(std::string* error)> open_sink;
};

struct Reply {
  int status = 0;
  std::string body;
};

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0)
      close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

// Until `fd` is ready for `events`: false after kIdleMs without, or when interrupted.
bool Wait(int fd, short events, const char* what, std::string* error) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, kIdleMs);
    if (r > 0)
      return true;
    if (r == 0) {
      *error = std::string(what) + " within 30 s";
      return false;
    }
    if (errno != EINTR) {
      *error = std::string("poll: ") + std::strerror(errno);
      return false;
    }
    if (g_interrupted) {
      *error = "interrupted";
      return false;
    }
  }
}

// Some bytes of the answer; 0 at EOF, -1 with *error set.
ssize_t Read(int fd, char* buf, size_t size, std::string* error) {
  for (;;) {
    if (!Wait(fd, POLLIN, "the admin API did not answer", error))
      return -1;
    const ssize_t n = recv(fd, buf, size, 0);
    if (n >= 0)
      return n;
    if (errno == EINTR && g_interrupted) {
      *error = "interrupted";
      return -1;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      *error = std::string("recv: ") + std::strerror(errno);
      return -1;
    }
  }
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [&](char x, char y) { return lower(x) == lower(y); });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// One request over a fresh connection (Connection: close). The answer is read to its
// Content-Length, or to EOF without one, allowing kIdleMs for each read.
bool Request(const std::string& admin, const std::string& token, const Call& call, Reply* reply,
             std::string* error) {
  socklen_t len = 0;
  auto addr = ParseEndpoint(admin, &len);
  if (!addr) {
    *error = "--admin " + admin + ": want host:port";
    return false;
  }
  const std::string unreachable = "cannot reach the admin API at " + admin + ": ";
  Socket sock(socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  const int fd = sock.fd();
  if (fd < 0) {
    *error = unreachable + std::strerror(errno);
    return false;
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&*addr), len) != 0) {
    if (errno != EINPROGRESS) {
      *error = unreachable + std::strerror(errno) + " (is spate running, with [admin] listen?)";
      return false;
    }
    std::string why;
    if (!Wait(fd, POLLOUT, "no connection", &why)) {
      *error = unreachable + why;
      return false;
    }
    int so_error = 0;
    socklen_t so_len = sizeof so_error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &so_len) != 0)
      so_error = errno;
    if (so_error != 0) {
      *error = unreachable + std::strerror(so_error) + " (is spate running, with [admin] listen?)";
      return false;
    }
  }

  std::string req = call.method + " " + call.target + " HTTP/1.1\r\nHost: " + admin +
                    "\r\nConnection: close\r\nAccept: " + call.accept + "\r\n";
  if (!token.empty())
    req += "Authorization: Bearer " + token + "\r\n";
  if (call.method == "POST" || call.method == "PUT")
    req += "Content-Type: " + call.content_type +
           "\r\nContent-Length: " + std::to_string(call.body.size()) + "\r\n";
  req += "\r\n";
  req += call.body;
  for (size_t sent = 0; sent < req.size();) {
    const ssize_t n = send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!Wait(fd, POLLOUT, "the admin API took nothing", error))
        return false;
      continue;
    }
    *error = std::string("send: ") + std::strerror(errno);
    return false;
  }

  // The head.
  std::string in;
  char buf[65536];
  size_t head_end;
  for (size_t from = 0; (head_end = in.find("\r\n\r\n", from)) == std::string::npos;) {
    if (in.size() > kMaxHead) {
      *error = "not an HTTP answer from " + admin;
      return false;
    }
    from = in.size() < 3 ? 0 : in.size() - 3;
    const ssize_t n = Read(fd, buf, sizeof buf, error);
    if (n < 0)
      return false;
    if (n == 0) {
      *error = in.empty() ? "the admin API at " + admin + " closed the connection unanswered"
                          : "not an HTTP answer from " + admin;
      return false;
    }
    in.append(buf, static_cast<size_t>(n));
  }
  if ((in.compare(0, 9, "HTTP/1.1 ") != 0 && in.compare(0, 9, "HTTP/1.0 ") != 0) || head_end < 12) {
    *error = "not an HTTP answer from " + admin;
    return false;
  }
  reply->status = std::atoi(in.c_str() + 9);
  bool has_length = false;
  uint64_t length = 0;
  const std::string_view head(in.data(), head_end);
  for (size_t at = head.find("\r\n"); at != std::string_view::npos && at < head.size();) {
    at += 2;
    size_t end = head.find("\r\n", at);
    if (end == std::string_view::npos)
      end = head.size();
    const std::string_view line = head.substr(at, end - at);
    at = end;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos)
      continue;
    const std::string_view name = Trim(line.substr(0, colon)), value = Trim(line.substr(colon + 1));
    if (EqualsNoCase(name, "content-length")) {
      char* stop = nullptr;
      const std::string digits(value);
      errno = 0;
      length = std::strtoull(digits.c_str(), &stop, 10);
      if (digits.empty() || *stop != '\0' || errno != 0 || digits[0] == '-') {
        *error = "a bad Content-Length from " + admin;
        return false;
      }
      has_length = true;
    } else if (EqualsNoCase(name, "transfer-encoding") && !EqualsNoCase(value, "identity")) {
      *error = "a " + std::string(value) + " answer from " + admin + " (want Content-Length)";
      return false;
    }
  }

  // The body: to the sink (a 2xx answer, when the call has one) or to reply->body.
  std::FILE* sink = nullptr;
  if (reply->status >= 200 && reply->status < 300 && call.open_sink) {
    sink = call.open_sink(error);
    if (!sink)
      return false;
  }
  uint64_t got = 0;
  auto take = [&](const char* data, size_t n) {
    if (has_length && n > length - got)
      n = static_cast<size_t>(length - got);
    got += n;
    if (sink) {
      if (n > 0 && std::fwrite(data, 1, n, sink) != n) {
        *error = std::string("write: ") + std::strerror(errno);
        return false;
      }
    } else {
      if (reply->body.size() + n > kMaxBody) {
        *error = "the answer is too large";
        return false;
      }
      reply->body.append(data, n);
    }
    return true;
  };
  if (has_length && !sink && length <= kMaxBody)
    reply->body.reserve(static_cast<size_t>(length));
  if (!take(in.data() + head_end + 4, in.size() - head_end - 4))
    return false;
  std::string().swap(in);
  while (!has_length || got < length) {
    const ssize_t n = Read(fd, buf, sizeof buf, error);
    if (n < 0)
      return false;
    if (n == 0) {
      if (has_length) {
        *error = "the answer was cut short: " + std::to_string(got) + " of " +
                 std::to_string(length) + " bytes";
        return false;
      }
      break;
    }
    if (!take(buf, static_cast<size_t>(n)))
      return false;
  }
  return true;
}

// Unreserved characters (RFC 3986 §2.3) as they are, every other byte %XX.
std::string Encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    const auto ch = static_cast<unsigned char>(c);
    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
        ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON and output

std::string Dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

// A field, tolerating its absence (and an older server): 0, "", false.
int64_t Int(const json& j, const char* key) {
  if (!j.is_object())
    return 0;
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number())
    return 0;
  if (it->is_number_float())
    return static_cast<int64_t>(it->get<double>());
  if (it->is_number_unsigned())
    return static_cast<int64_t>(it->get<uint64_t>());
  return it->get<int64_t>();
}

bool Has(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && !j[key].is_null();
}

std::string Str(const json& j, const char* key, const std::string& otherwise = {}) {
  if (!j.is_object())
    return otherwise;
  const auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return otherwise;
  if (it->is_string())
    return it->get<std::string>();
  return Dump(*it);
}

bool Bool(const json& j, const char* key) {
  if (!j.is_object())
    return false;
  const auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

const json& Array(const json& j, const char* key) {
  static const json kEmpty = json::array();
  if (!j.is_object())
    return kEmpty;
  const auto it = j.find(key);
  return it != j.end() && it->is_array() ? *it : kEmpty;
}

const json& Object(const json& j, const char* key) {
  static const json kEmpty = json::object();
  if (!j.is_object())
    return kEmpty;
  const auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : kEmpty;
}

std::string Dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

std::string Upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z')
      c = static_cast<char>(c - 'a' + 'A');
  return s;
}

std::string Age(int64_t seconds) {
  char out[32];
  if (seconds < 120)
    std::snprintf(out, sizeof out, "%llds", static_cast<long long>(seconds));
  else if (seconds < 7200)
    std::snprintf(out, sizeof out, "%lldm", static_cast<long long>(seconds / 60));
  else if (seconds < 172800)
    std::snprintf(out, sizeof out, "%lldh", static_cast<long long>(seconds / 3600));
  else
    std::snprintf(out, sizeof out, "%lldd", static_cast<long long>(seconds / 86400));
  return out;
}

std::string Rate(double per_s) {
  char out[32];
  std::snprintf(out, sizeof out, "%.1f", per_s);
  return out;
}

std::string NowRfc3339() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return out;
}

// Columns as wide as their widest cell; numbers right-aligned; the last column unpadded.
class Table {
 public:
  struct Column {
    std::string header;
    bool right = false;
    size_t min_width = 0;
  };

  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

  void Add(std::vector<std::string> cells) {
    cells.resize(columns_.size());
    rows_.push_back(std::move(cells));
  }

  void Print() const {
    std::vector<size_t> width(columns_.size());
    for (size_t c = 0; c < columns_.size(); ++c) {
      width[c] = std::max(columns_[c].min_width, columns_[c].header.size());
      for (const auto& row : rows_)
        width[c] = std::max(width[c], row[c].size());
    }
    auto line = [&](auto cell) {
      std::string out;
      for (size_t c = 0; c < columns_.size(); ++c) {
        const std::string& text = cell(c);
        const size_t pad = width[c] - std::min(width[c], text.size());
        if (c > 0)
          out += "  ";
        if (columns_[c].right)
          out.append(pad, ' ');
        out += text;
        if (!columns_[c].right && c + 1 < columns_.size())
          out.append(pad, ' ');
      }
      std::printf("%s\n", out.c_str());
    };
    line([&](size_t c) -> const std::string& { return columns_[c].header; });
    for (const auto& row : rows_)
      line([&](size_t c) -> const std::string& { return row[c]; });
  }

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// ---------------------------------------------------------------------------------------------
// The command line

struct Ctl;

struct Command {
  const char* name;      // "suppression list": two words
  const char* synopsis;  // after "spate ctl "
  std::vector<std::string_view> options;
  size_t min_args, max_args;
  const char* args;  // what the positional arguments are, for messages
  int (*run)(Ctl& ctl);
};

struct Ctl {
  const Command* command = nullptr;
  std::string admin, token;
  bool json = false;
  std::vector<std::pair<std::string, std::string>> options;  // the command's, as given
  std::vector<std::string> args;                             // after the command's name(s)

  // The value of --name (given once at most: checked), or nullptr.
  const std::string* Option(std::string_view name) const {
    for (const auto& [n, v] : options)
      if (n == name)
        return &v;
    return nullptr;
  }
  std::string Option(std::string_view name, const std::string& otherwise) const {
    const std::string* v = Option(name);
    return v ? *v : otherwise;
  }
};

int UsageError(const Ctl& ctl, const std::string& why) {
  std::fprintf(stderr, "spate ctl %s: %s\nusage: spate ctl %s\n", ctl.command->name, why.c_str(),
               ctl.command->synopsis);
  return 2;
}

// Exactly one (or, !required, at most one) of `names` given: its name without "--" in *scope
// and its value in *value.
bool Selector(const Ctl& ctl, const std::vector<std::string_view>& names, bool required,
              std::string* scope, std::string* value, int* status) {
  size_t given = 0;
  for (const auto& [n, v] : ctl.options) {
    if (std::find(names.begin(), names.end(), n) == names.end())
      continue;
    ++given;
    *scope = n.substr(2);
    *value = v;
  }
  if (given > 1 || (required && given == 0)) {
    std::string list;
    for (const std::string_view n : names)
      list += (list.empty() ? "" : ", ") + std::string(n);
    *status = UsageError(
        ctl, names.size() == 1 ? "give " + list + " once at most" : "give exactly one of " + list);
    return false;
  }
  if (given == 1 && value->empty()) {
    *status = UsageError(ctl, "--" + *scope + " is empty");
    return false;
  }
  return true;
}

// The answer as JSON in *body (0), or its refusal printed (1).
int Answer(const Reply& reply, json* body) {
  *body = json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (reply.status >= 200 && reply.status < 300 && !body->is_discarded())
    return 0;
  std::string text = reply.body.empty() ? "(an empty answer)" : reply.body;
  if (body->is_object() && body->contains("error")) {
    text = Str(*body, "error");
    if (Has(*body, "field") && !Str(*body, "field").empty())
      text += " (field: " + Str(*body, "field") + ")";
  }
  std::fprintf(stderr, "spate ctl: %d: %s\n", reply.status, text.c_str());
  return 1;
}

int Api(const Ctl& ctl, const Call& call, json* body) {
  Reply reply;
  std::string error;
  if (!Request(ctl.admin, ctl.token, call, &reply, &error)) {
    std::fprintf(stderr, "spate ctl: %s\n", error.c_str());
    return 1;
  }
  return Answer(reply, body);
}

Call Get(std::string target) {
  Call call;
  call.target = std::move(target);
  return call;
}

Call Post(std::string target, std::string body = {}) {
  Call call;
  call.method = "POST";
  call.target = std::move(target);
  call.body = std::move(body);
  return call;
}

// --json: the answer as it came, pretty-printed.
bool PrintedJson(const Ctl& ctl, const json& body) {
  if (!ctl.json)
    return false;
  std::printf("%s\n", Dump(body, 1).c_str());
  return true;
}

// ---------------------------------------------------------------------------------------------
// The commands

int Queue(Ctl& ctl) {
  const std::string by = ctl.Option("--by", "domain");
  json body;
  if (int status = Api(ctl, Get("/api/admin/v1/queue?by=" + Encode(by)), &body))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  Table table({{Upper(Str(body, "by", by)), false, 40},
               {"QUEUED", true, 10},
               {"IN FLIGHT", true},
               {"OLDEST", true, 8},
               {"CONNECTIONS", true},
               {"SUSPENDED", true}});
  for (const json& row : Array(body, "rows"))
    table.Add({Str(row, "name"), std::to_string(Int(row, "queued")),
               std::to_string(Int(row, "in_flight")),
               Has(row, "oldest_age_seconds") ? Age(Int(row, "oldest_age_seconds")) : "-",
               std::to_string(Int(row, "connections")), Bool(row, "suspended") ? "yes" : "no"});
  table.Print();
  return 0;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ostringstream all;
  if (path == "-") {
    all << std::cin.rdbuf();
    *out = all.str();
    return !std::cin.bad();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return false;
  all << in.rdbuf();
  *out = all.str();
  return !in.bad();
}

std::string Until(const json& j) {
  return Has(j, "until") ? Str(j, "until") : "resumed";
}

// A suspension's or bounce's body: the selector, and --duration and --reason when given.
std::string ControlRequest(Ctl& ctl, const std::string& scope, const std::string& name) {
  json request = {{scope, name}};
  if (const std::string* duration = ctl.Option("--duration"))
    request["duration"] = *duration;
  if (const std::string* reason = ctl.Option("--reason"))
    request["reason"] = *reason;
  return Dump(request);
}

int Suspend(Ctl& ctl) {
  std::string scope, name;
  int status = 0;
  if (!Selector(ctl, {"--domain", "--site", "--campaign"}, true, &scope, &name, &status))
    return status;
  json body;
  if ((status = Api(ctl, Post("/api/admin/v1/suspend", ControlRequest(ctl, scope, name)), &body)))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  const json& s = Object(body, "suspension");
  const std::string reason = Str(s, "reason");
  std::printf("suspended %s %s until %s%s%s%s\n", Str(s, "scope", scope).c_str(),
              Str(s, "name", name).c_str(), Until(s).c_str(),
              reason.empty() ? "" : " (reason: ", reason.c_str(), reason.empty() ? "" : ")");
  return 0;
}

int Resume(Ctl& ctl) {
  std::string scope, name;
  int status = 0;
  if (!Selector(ctl, {"--domain", "--site", "--campaign"}, true, &scope, &name, &status))
    return status;
  json body;
  if ((status = Api(ctl, Post("/api/admin/v1/resume", Dump(json{{scope, name}})), &body)))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  const json& r = Object(body, "resumed");
  std::printf("resumed %s %s\n", Str(r, "scope", scope).c_str(), Str(r, "name", name).c_str());
  return 0;
}

int Suspensions(Ctl& ctl) {
  json body;
  if (int status = Api(ctl, Get("/api/admin/v1/suspensions"), &body))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  Table table({{"SCOPE"}, {"NAME", false, 30}, {"UNTIL", false, 20}, {"REASON"}});
  for (const json& s : Array(body, "suspensions"))
    table.Add({Str(s, "scope"), Str(s, "name"), Has(s, "until") ? Str(s, "until") : "-",
               Dash(Str(s, "reason"))});
  table.Print();
  return 0;
}

int Bounce(Ctl& ctl) {
  std::string scope, name;
  int status = 0;
  if (!Selector(ctl, {"--domain", "--campaign"}, true, &scope, &name, &status))
    return status;
  json body;
  if ((status = Api(ctl, Post("/api/admin/v1/bounce", ControlRequest(ctl, scope, name)), &body)))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  const json& b = Object(body, "bounce");
  std::printf("bounced %lld queued recipients of %s %s; new mail for it is bounced until %s\n",
              static_cast<long long>(Int(body, "bounced")), Str(b, "scope", scope).c_str(),
              Str(b, "name", name).c_str(), Until(b).c_str());
  return 0;
}

int Message(Ctl& ctl) {
  if (ctl.args[0].empty())
    return UsageError(ctl, "the message ID is empty");
  json body;
  if (int status = Api(ctl, Get("/api/admin/v1/message?id=" + Encode(ctl.args[0])), &body))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  std::printf("message   %s\n", Str(body, "id", ctl.args[0]).c_str());
  std::printf("from      %s\n", Str(body, "sender").empty() ? "<>" : Str(body, "sender").c_str());
  std::printf("received  %s\n", Dash(Str(body, "received")).c_str());
  std::printf("size      %lld bytes\n", static_cast<long long>(Int(body, "size")));
  std::printf("campaign  %s\n\n", Dash(Str(body, "campaign")).c_str());
  Table table(
      {{"ADDRESS", false, 30}, {"STATUS"}, {"ATTEMPTS", true}, {"NEXT/AT", false, 20}, {"REPLY"}});
  for (const json& r : Array(body, "recipients"))
    table.Add({Str(r, "address"), Str(r, "status"), std::to_string(Int(r, "attempts")),
               Has(r, "next_attempt") ? Str(r, "next_attempt") : Dash(Str(r, "at")),
               Dash(Str(r, "reply"))});
  table.Print();
  return 0;
}

int Reload(Ctl& ctl) {
  json body;
  if (int status = Api(ctl, Post("/api/admin/v1/reload"), &body))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  std::puts("reload requested: the log says \"spate: reloaded\" or why it was refused");
  return 0;
}

int Flush(Ctl& ctl) {
  std::string scope, domain;
  int status = 0;
  if (!Selector(ctl, {"--domain"}, false, &scope, &domain, &status))
    return status;
  json body;
  if ((status = Api(ctl,
                    Post("/api/admin/v1/flush" +
                         (domain.empty() ? std::string() : "?domain=" + Encode(domain))),
                    &body)))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  std::printf("flush requested: deferred mail of %s is tried now\n",
              domain.empty() ? "every domain" : domain.c_str());
  return 0;
}

int SuppressionAdd(Ctl& ctl) {
  json body;
  if (int status = Api(ctl,
                       Post("/api/admin/v1/suppression",
                            Dump(json{{"address", ctl.args[0]},
                                      {"reason", ctl.Option("--reason", std::string())}})),
                       &body))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  const std::string reason = Str(body, "reason");
  std::printf("%s suppressed since %s (%s%s%s)\n", Str(body, "address").c_str(),
              Str(body, "since").c_str(), Str(body, "class").c_str(), reason.empty() ? "" : ": ",
              reason.c_str());
  return 0;
}

int SuppressionShowOrRemove(Ctl& ctl) {
  const bool show = std::strcmp(ctl.command->name, "suppression show") == 0;
  Call call = Get("/api/admin/v1/suppression?address=" + Encode(ctl.args[0]));
  if (!show)
    call.method = "DELETE";
  json body;
  if (int status = Api(ctl, call, &body))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  if (!show) {
    std::printf("%s removed from the suppression list\n", ctl.args[0].c_str());
    return 0;
  }
  const std::string reason = Str(body, "reason");
  std::printf("%s suppressed since %s (%s%s%s)\n", Str(body, "address").c_str(),
              Str(body, "since").c_str(), Str(body, "class").c_str(), reason.empty() ? "" : ": ",
              reason.c_str());
  return 0;
}

bool Whole(const std::string& text, bool positive, uint64_t* out) {
  if (text.empty() || text.size() > 18 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  *out = std::strtoull(text.c_str(), nullptr, 10);
  return !positive || *out > 0;
}

int SuppressionList(Ctl& ctl) {
  std::string target = "/api/admin/v1/suppression";
  if (const std::string* limit = ctl.Option("--limit")) {
    uint64_t n = 0;
    if (!Whole(*limit, false, &n))
      return UsageError(ctl, "--limit wants a whole number, not \"" + *limit + "\"");
    target += "?limit=" + std::to_string(n);
  }
  json body;
  if (int status = Api(ctl, Get(target), &body))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  const json& entries = Array(body, "entries");
  Table table({{"ADDRESS", false, 30}, {"SINCE", false, 20}, {"CLASS"}, {"REASON"}});
  for (const json& e : entries)
    table.Add({Str(e, "address"), Str(e, "since"), Str(e, "class"), Dash(Str(e, "reason"))});
  table.Print();
  const int64_t count =
      Has(body, "count") ? Int(body, "count") : static_cast<int64_t>(entries.size());
  if (Bool(body, "truncated"))
    std::printf("%lld entries (first %zu shown)\n", static_cast<long long>(count), entries.size());
  else
    std::printf("%lld entries\n", static_cast<long long>(count));
  return 0;
}

int SuppressionExport(Ctl& ctl) {
  const std::string path = ctl.args.empty() ? "-" : ctl.args[0];
  const bool to_stdout = path == "-";
  std::FILE* out = nullptr;
  bool local_failure = false, regular = false;
  Call call = Get("/api/admin/v1/suppression/export");
  call.accept = "text/csv, application/json";
  call.open_sink = [&](std::string* error) -> std::FILE* {
    if (to_stdout)
      return out = stdout;
    out = std::fopen(path.c_str(), "wb");
    if (!out) {
      *error = "cannot write " + path + ": " + std::strerror(errno);
      local_failure = true;
      return nullptr;
    }
    struct stat st {};
    regular = fstat(fileno(out), &st) == 0 && S_ISREG(st.st_mode);
    return out;
  };
  Reply reply;
  std::string error;
  bool ok = Request(ctl.admin, ctl.token, call, &reply, &error);
  if (out && std::fflush(out) != 0 && ok) {
    error = "cannot write " + path + ": " + std::strerror(errno);
    ok = false;
  }
  if (out && !to_stdout && std::fclose(out) != 0 && ok) {
    error = "cannot write " + path + ": " + std::strerror(errno);
    ok = false;
  }
  if (!ok) {
    if (out && !to_stdout && regular)
      unlink(path.c_str());  // not half a list
    std::fprintf(stderr, "spate ctl: %s\n", error.c_str());
    return local_failure ? 2 : 1;
  }
  if (!out) {  // refused (no 2xx, so no sink): the body is its JSON error, not CSV
    json body;
    return Answer(reply, &body) != 0 ? 1 : 0;
  }
  if (!to_stdout)
    std::fprintf(stderr, "exported to %s\n", path.c_str());
  return 0;
}

int SuppressionImport(Ctl& ctl) {
  std::string csv;
  if (!ReadFile(ctl.args[0], &csv)) {
    std::fprintf(stderr, "spate ctl: cannot read %s\n", ctl.args[0].c_str());
    return 2;
  }
  Call call = Post("/api/admin/v1/suppression/import", std::move(csv));
  call.content_type = "text/csv";
  json body;
  if (int status = Api(ctl, call, &body))
    return status;
  if (PrintedJson(ctl, body))
    return 0;
  std::printf("imported %lld entries (%lld skipped)\n",
              static_cast<long long>(Int(body, "imported")),
              static_cast<long long>(Int(body, "skipped")));
  for (const json& e : Array(body, "errors"))
    std::printf("%s\n", e.is_string() ? e.get<std::string>().c_str() : Dump(e).c_str());
  return 0;
}

// top: the queue polled; rates from the differences of the totals over the measured time.
struct Totals {
  int64_t delivered = 0, deferred = 0, failed = 0, queued = 0, in_flight = 0;
};

struct Sample {
  std::chrono::steady_clock::time_point at;
  std::map<std::string, Totals> rows;
  std::string by;
};

int Poll(const Ctl& ctl, const std::string& by, Sample* sample) {
  json body;
  if (int status = Api(ctl, Get("/api/admin/v1/queue?by=" + Encode(by)), &body))
    return status;
  sample->at = std::chrono::steady_clock::now();
  sample->by = Str(body, "by", by);
  sample->rows.clear();
  for (const json& row : Array(body, "rows")) {
    Totals& t = sample->rows[Str(row, "name")];
    t.delivered = Int(row, "delivered");
    t.deferred = Int(row, "deferred");
    t.failed = Int(row, "failed");
    t.queued = Int(row, "queued");
    t.in_flight = Int(row, "in_flight");
  }
  return 0;
}

// Sleeps until `until`: false when interrupted first.
bool SleepUntil(std::chrono::steady_clock::time_point until) {
  for (;;) {
    if (g_interrupted)
      return false;
    const auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero())
      return true;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    nanosleep(&ts, nullptr);
  }
}

double Round3(double x) {
  return std::round(x * 1000) / 1000;
}

// The drain's state, one line: "draining: 12 messages held, 1 connection open".
std::string DrainLine(const json& body) {
  const int64_t pending = Int(body, "pending_messages");
  const int64_t inbound = Int(body, "inbound_connections");
  if (Has(body, "drained") && body["drained"].get<bool>())
    return "drained: no message held, no client connected; the node can be stopped";
  return std::string(body.value("draining", false) ? "draining" : "not draining") + ": " +
         std::to_string(pending) + (pending == 1 ? " message" : " messages") + " held, " +
         std::to_string(inbound) + (inbound == 1 ? " connection" : " connections") + " open";
}

int DrainStatus(Ctl& ctl) {
  json body;
  if (int status = Api(ctl, Get("/api/admin/v1/drain"), &body))
    return status;
  if (!PrintedJson(ctl, body))
    std::puts(DrainLine(body).c_str());
  return 0;
}

// POST /drain, then the state every second (a line when it changes) until drained: exit 0;
// past --timeout: exit 1; Ctrl-C: the drain goes on, exit 130.
int Drain(Ctl& ctl) {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (const std::string* text = ctl.Option("--timeout")) {
    Result<Seconds> d = ParseDuration(*text);
    if (!d)
      return UsageError(ctl, "--timeout wants a duration (90s, 30m, 1h), not \"" + *text + "\"");
    deadline = std::chrono::steady_clock::now() +
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(*d);
  }
  json body;
  if (int status = Api(ctl, Post("/api/admin/v1/drain"), &body))
    return status;
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  std::string last;
  for (;;) {
    const std::string line = DrainLine(body);
    if (ctl.json && body.value("drained", false)) {
      PrintedJson(ctl, body);
      return 0;
    }
    if (!ctl.json && line != last) {
      std::puts(line.c_str());
      std::fflush(stdout);
      last = line;
    }
    if (body.value("drained", false))
      return 0;
    if (deadline && std::chrono::steady_clock::now() >= *deadline) {
      if (ctl.json)
        PrintedJson(ctl, body);
      std::fprintf(stderr, "spate ctl: drain: not drained within --timeout; it goes on\n");
      return 1;
    }
    if (!SleepUntil(std::chrono::steady_clock::now() + std::chrono::seconds(1)))
      return 130;
    if (int status = Api(ctl, Get("/api/admin/v1/drain"), &body))
      return status;
  }
}

int Top(Ctl& ctl) {
  const std::string by = ctl.Option("--by", "domain");
  double interval = 2;
  if (const std::string* text = ctl.Option("--interval")) {
    char* end = nullptr;
    interval = std::strtod(text->c_str(), &end);
    if (text->empty() || *end != '\0' || !std::isfinite(interval) || interval <= 0 ||
        interval > 86400)
      return UsageError(ctl, "--interval wants seconds (2, 0.5), not \"" + *text + "\"");
  }
  uint64_t count = 0;  // 0: until interrupted
  if (const std::string* text = ctl.Option("--count"); text && !Whole(*text, true, &count))
    return UsageError(ctl, "--count wants a whole number above 0, not \"" + *text + "\"");

  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a poll or sleep under way ends at once
  sigaction(SIGINT, &sa, nullptr);
  const bool tty = isatty(STDOUT_FILENO) == 1;
  const auto step = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(interval));

  Sample last, now;
  if (int status = Poll(ctl, by, &last))
    return g_interrupted ? 0 : status;
  for (uint64_t shown = 0; count == 0 || shown < count; ++shown) {
    if (!SleepUntil(last.at + step))
      return 0;
    if (int status = Poll(ctl, by, &now))
      return g_interrupted ? 0 : status;
    const double elapsed = std::chrono::duration<double>(now.at - last.at).count();
    struct Row {
      std::string name;
      double delivered, deferred, failed;
      int64_t queued, in_flight;
    };
    std::vector<Row> rows;
    for (const auto& [name, t] : now.rows) {
      Row row{name, 0, 0, 0, t.queued, t.in_flight};
      // A row the last poll did not have has no rate yet; a total going down (a restarted
      // daemon) counts as none.
      if (auto before = last.rows.find(name); before != last.rows.end() && elapsed > 0) {
        row.delivered =
            static_cast<double>(std::max<int64_t>(0, t.delivered - before->second.delivered)) /
            elapsed;
        row.deferred =
            static_cast<double>(std::max<int64_t>(0, t.deferred - before->second.deferred)) /
            elapsed;
        row.failed =
            static_cast<double>(std::max<int64_t>(0, t.failed - before->second.failed)) / elapsed;
      }
      rows.push_back(std::move(row));
    }
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
      if (a.delivered != b.delivered)
        return a.delivered > b.delivered;
      if (a.queued != b.queued)
        return a.queued > b.queued;
      return a.name < b.name;
    });
    const std::string at = NowRfc3339();
    if (ctl.json) {
      nlohmann::ordered_json out = {{"at", at},
                                    {"interval_seconds", Round3(elapsed)},
                                    {"rows", nlohmann::ordered_json::array()}};
      for (const Row& r : rows)
        out["rows"].push_back({{"name", r.name},
                               {"delivered_per_s", Round3(r.delivered)},
                               {"deferred_per_s", Round3(r.deferred)},
                               {"failed_per_s", Round3(r.failed)},
                               {"queued", r.queued},
                               {"in_flight", r.in_flight}});
      std::printf("%s\n", out.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    } else {
      if (tty) {
        char every[32];
        std::snprintf(every, sizeof every, "%g", interval);
        std::printf("\x1b[H\x1b[2Jspate ctl top: by %s, every %s s, at %s\n\n", now.by.c_str(),
                    every, at.c_str());
      } else {
        std::printf("\n");
      }
      Table table({{Upper(now.by), false, 40},
                   {"DELIVERED/S", true},
                   {"DEFERRED/S", true},
                   {"FAILED/S", true},
                   {"QUEUED", true, 10},
                   {"IN FLIGHT", true}});
      const size_t shown_rows = tty ? std::min(rows.size(), kTopRows) : rows.size();
      for (size_t i = 0; i < shown_rows; ++i)
        table.Add({rows[i].name, Rate(rows[i].delivered), Rate(rows[i].deferred),
                   Rate(rows[i].failed), std::to_string(rows[i].queued),
                   std::to_string(rows[i].in_flight)});
      table.Print();
      if (shown_rows < rows.size())
        std::printf("(%zu more)\n", rows.size() - shown_rows);
    }
    std::fflush(stdout);
    last = std::move(now);
  }
  return 0;
}

const std::vector<Command>& Commands() {
  static const std::vector<Command> commands = {
      {"queue", "queue [--by domain|site|campaign]", {"--by"}, 0, 0, "", Queue},
      {"top",
       "top [--interval SECONDS] [--count N] [--by domain|site|campaign]",
       {"--interval", "--count", "--by"},
       0,
       0,
       "",
       Top},
      {"suspend",
       "suspend (--domain D | --site S | --campaign C) [--duration DUR] [--reason TEXT]",
       {"--domain", "--site", "--campaign", "--duration", "--reason"},
       0,
       0,
       "",
       Suspend},
      {"resume",
       "resume (--domain D | --site S | --campaign C)",
       {"--domain", "--site", "--campaign"},
       0,
       0,
       "",
       Resume},
      {"suspensions", "suspensions", {}, 0, 0, "", Suspensions},
      {"bounce",
       "bounce (--domain D | --campaign C) [--reason TEXT] [--duration DUR]",
       {"--domain", "--campaign", "--reason", "--duration"},
       0,
       0,
       "",
       Bounce},
      {"message", "message ID", {}, 1, 1, "ID", Message},
      {"reload", "reload", {}, 0, 0, "", Reload},
      {"flush", "flush [--domain D]", {"--domain"}, 0, 0, "", Flush},
      {"suppression add",
       "suppression add ADDRESS [--reason TEXT]",
       {"--reason"},
       1,
       1,
       "ADDRESS",
       SuppressionAdd},
      {"suppression show",
       "suppression show ADDRESS",
       {},
       1,
       1,
       "ADDRESS",
       SuppressionShowOrRemove},
      {"suppression remove",
       "suppression remove ADDRESS",
       {},
       1,
       1,
       "ADDRESS",
       SuppressionShowOrRemove},
      {"suppression list", "suppression list [--limit N]", {"--limit"}, 0, 0, "", SuppressionList},
      {"suppression export", "suppression export [FILE|-]", {}, 0, 1, "FILE", SuppressionExport},
      {"suppression import", "suppression import FILE|-", {}, 1, 1, "FILE", SuppressionImport},
      {"drain status", "drain status", {}, 0, 0, "", DrainStatus},
      {"drain", "drain [--timeout DUR]", {"--timeout"}, 0, 0, "", Drain},
  };
  return commands;
}

// Options that take a value; the command's are checked against Command::options.
constexpr std::string_view kGlobalOptions[] = {"--admin", "--token-file", "--config"};
constexpr std::string_view kCommandOptions[] = {"--by",       "--domain", "--site",  "--campaign",
                                                "--duration", "--reason", "--limit", "--interval",
                                                "--count",    "--timeout"};

int GeneralUsage(const std::string& why) {
  std::fprintf(stderr, "spate ctl: %s\n%s", why.c_str(), kUsage);
  return 2;
}

bool ReadToken(const std::string& token_file, std::string* token) {
  std::ifstream in(token_file, std::ios::binary);
  std::ostringstream all;
  all << in.rdbuf();
  if (!in)
    return false;
  *token = all.str();
  while (!token->empty() &&
         (token->back() == '\n' || token->back() == '\r' || token->back() == ' '))
    token->pop_back();
  return true;
}

}  // namespace

int CtlCommand(int argc, char** argv) {
  std::string token_file, config_path;
  Ctl ctl;
  std::vector<std::string> words;
  bool help = false, options_end = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (options_end || a == "-" || a.size() < 2 || a[0] != '-') {
      words.push_back(std::move(a));
      continue;
    }
    if (a == "--") {
      options_end = true;
      continue;
    }
    if (a == "--json") {
      ctl.json = true;
      continue;
    }
    if (a == "-h" || a == "--help") {
      help = true;
      continue;
    }
    std::string value;
    bool has_value = false;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a.resize(eq);
      has_value = true;
    }
    const bool global = std::find(std::begin(kGlobalOptions), std::end(kGlobalOptions), a) !=
                        std::end(kGlobalOptions);
    if (!global && std::find(std::begin(kCommandOptions), std::end(kCommandOptions), a) ==
                       std::end(kCommandOptions))
      return GeneralUsage("unknown option " + a);
    if (!has_value) {
      if (i + 1 >= argc)
        return GeneralUsage(a + " needs a value");
      value = argv[++i];
    }
    if (a == "--admin")
      ctl.admin = value;
    else if (a == "--token-file")
      token_file = value;
    else if (a == "--config")
      config_path = value;
    else
      ctl.options.emplace_back(a, value);
  }
  if (help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (words.empty())
    return GeneralUsage("no command");

  // The command: one word, or two for suppression (and "drain status").
  size_t name_words = 1;
  std::string name = words[0];
  if (name == "suppression") {
    if (words.size() < 2)
      return GeneralUsage("suppression wants add, show, remove, list, export or import");
    name += " " + words[1];
    name_words = 2;
  } else if (name == "drain" && words.size() >= 2 && words[1] == "status") {
    name += " status";
    name_words = 2;
  }
  for (const Command& c : Commands())
    if (name == c.name)
      ctl.command = &c;
  if (!ctl.command)
    return GeneralUsage(name_words == 2
                            ? "suppression wants add, show, remove, list, export or import"
                            : "unknown command " + name);
  ctl.args.assign(words.begin() + static_cast<std::ptrdiff_t>(name_words), words.end());
  const Command& command = *ctl.command;
  for (size_t i = 0; i < ctl.options.size(); ++i) {
    const std::string& option = ctl.options[i].first;
    if (std::find(command.options.begin(), command.options.end(), option) ==
        command.options.end()) {
      std::string why = option + " does not apply to " + command.name;
      std::string selectors;
      for (const std::string_view o : command.options)
        if (o == "--domain" || o == "--site" || o == "--campaign")
          selectors += (selectors.empty() ? "" : ", ") + std::string(o);
      if ((option == "--domain" || option == "--site" || option == "--campaign") &&
          selectors.find(',') != std::string::npos)
        why += "; give exactly one of " + selectors;
      return UsageError(ctl, why);
    }
    const bool selector = option == "--domain" || option == "--site" || option == "--campaign";
    for (size_t j = 0; j < i && !selector; ++j)
      if (ctl.options[j].first == option)
        return UsageError(ctl, option + " given twice");
  }
  if (ctl.args.size() < command.min_args)
    return UsageError(ctl, std::string("missing ") + command.args);
  if (ctl.args.size() > command.max_args)
    return UsageError(ctl, "unexpected argument \"" + ctl.args[command.max_args] + "\"");

  std::string error;
  if (ctl.admin.empty() || token_file.empty()) {
    auto config = LoadConfig(config_path, &error);
    if (!config) {
      std::fprintf(stderr, "spate ctl: configuration: %s\n", error.c_str());
      return 2;
    }
    if (ctl.admin.empty())
      ctl.admin = config->admin_listen;
    if (token_file.empty())
      token_file = config->admin_token_file;
  }
  if (ctl.admin.empty()) {
    std::fputs("spate ctl: [admin] listen is off; give --admin HOST:PORT\n", stderr);
    return 2;
  }
  if (!token_file.empty() && !ReadToken(token_file, &ctl.token)) {
    std::fprintf(stderr, "spate ctl: cannot read %s\n", token_file.c_str());
    return 2;
  }
  try {
    return command.run(ctl);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "spate ctl: an unexpected answer: %s\n", e.what());
    return 1;
  }
}

}  // namespace spate::daemon
