#include "core/daemon/ctl_command.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/connection.h"
#include "core/daemon/config.h"

#include <nlohmann/json.hpp>

namespace spate::daemon {

namespace {

constexpr const char* kUsage =
    "usage: spate ctl [--admin HOST:PORT] [--token-file FILE] [--config FILE] [--json] COMMAND\n"
    "  queue [--by domain|site]   queued recipients, oldest age, connections, suspended\n"
    "  reload                     reload the shaping file, the routes and the DKIM keys\n"
    "  flush [--domain D]         try deferred mail (of D) now\n"
    "  suppression show|remove ADDRESS, suppression add ADDRESS [--reason TEXT]\n";

struct Reply {
  int status = 0;
  std::string body;
};

// One request over a fresh connection (Connection: close), bounded to 30 s in all.
bool Request(const std::string& admin, const std::string& token, const std::string& method,
             const std::string& target, Reply* reply, std::string* error,
             const std::string& body = {}) {
  socklen_t len = 0;
  auto addr = ParseEndpoint(admin, &len);
  if (!addr) {
    *error = "--admin " + admin + ": want host:port";
    return false;
  }
  int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<const sockaddr*>(&*addr), len) != 0) {
    *error = "cannot reach the admin API at " + admin + ": " + std::strerror(errno) +
             " (is spate running, with [admin] listen?)";
    if (fd >= 0)
      close(fd);
    return false;
  }
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + admin +
                    "\r\nConnection: close\r\nAccept: application/json\r\n";
  if (!token.empty())
    req += "Authorization: Bearer " + token + "\r\n";
  if (method == "POST")
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  for (size_t sent = 0; sent < req.size();) {
    ssize_t n = send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      *error = std::string("send: ") + std::strerror(errno);
      close(fd);
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  std::string in;
  char buf[16384];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 30000) <= 0) {
      *error = "the admin API did not answer within 30 s";
      close(fd);
      return false;
    }
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      break;
    in.append(buf, static_cast<size_t>(n));
    if (in.size() > (64u << 20))
      break;
  }
  close(fd);
  const size_t head_end = in.find("\r\n\r\n");
  if (in.compare(0, 9, "HTTP/1.1 ") != 0 || head_end == std::string::npos || in.size() < 12) {
    *error = "not an HTTP answer from " + admin;
    return false;
  }
  reply->status = std::atoi(in.c_str() + 9);
  reply->body = in.substr(head_end + 4);
  return true;
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

}  // namespace

int CtlCommand(int argc, char** argv) {
  std::string admin, token_file, config_path, by = "domain", domain, reason;
  bool json = false;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc)
        return false;
      *out = argv[++i];
      return true;
    };
    if (a == "--admin") {
      if (!value(&admin))
        return std::fputs(kUsage, stderr), 2;
    } else if (a == "--token-file") {
      if (!value(&token_file))
        return std::fputs(kUsage, stderr), 2;
    } else if (a == "--config") {
      if (!value(&config_path))
        return std::fputs(kUsage, stderr), 2;
    } else if (a == "--by") {
      if (!value(&by))
        return std::fputs(kUsage, stderr), 2;
    } else if (a == "--reason") {
      if (!value(&reason))
        return std::fputs(kUsage, stderr), 2;
    } else if (a == "--domain") {
      if (!value(&domain))
        return std::fputs(kUsage, stderr), 2;
    } else if (a == "--json") {
      json = true;
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      rest.push_back(a);
    }
  }
  const bool suppression_command = rest.size() == 3 && rest[0] == "suppression" &&
                                   (rest[1] == "show" || rest[1] == "add" || rest[1] == "remove");
  if (!suppression_command &&
      (rest.size() != 1 || (rest[0] != "queue" && rest[0] != "reload" && rest[0] != "flush"))) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::string error;
  if (admin.empty() || token_file.empty()) {
    auto config = LoadConfig(config_path, &error);
    if (!config) {
      std::fprintf(stderr, "spate ctl: configuration: %s\n", error.c_str());
      return 2;
    }
    if (admin.empty())
      admin = config->admin_listen;
    if (token_file.empty())
      token_file = config->admin_token_file;
  }
  if (admin.empty()) {
    std::fputs("spate ctl: [admin] listen is off; give --admin HOST:PORT\n", stderr);
    return 2;
  }
  std::string token;
  if (!token_file.empty()) {
    std::ifstream in(token_file, std::ios::binary);
    std::ostringstream all;
    all << in.rdbuf();
    if (!in) {
      std::fprintf(stderr, "spate ctl: cannot read %s\n", token_file.c_str());
      return 2;
    }
    token = all.str();
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' '))
      token.pop_back();
  }
  Reply reply;
  bool ok;
  if (suppression_command) {
    // The address goes in the query with its '@' escaped (the one character it needs).
    std::string query = "?address=";
    for (char ch : rest[2])
      query += ch == '@' ? std::string("%40") : std::string(1, ch);
    if (rest[1] == "add") {
      ok = Request(admin, token, "POST", "/api/admin/v1/suppression", &reply, &error,
                   nlohmann::json({{"address", rest[2]}, {"reason", reason}}).dump());
    } else {
      ok = Request(admin, token, rest[1] == "show" ? "GET" : "DELETE",
                   "/api/admin/v1/suppression" + query, &reply, &error);
    }
  } else if (rest[0] == "queue") {
    ok = Request(admin, token, "GET", "/api/admin/v1/queue?by=" + by, &reply, &error);
  } else if (rest[0] == "flush") {
    ok = Request(admin, token, "POST",
                 "/api/admin/v1/flush" + (domain.empty() ? std::string() : "?domain=" + domain),
                 &reply, &error);
  } else {
    ok = Request(admin, token, "POST", "/api/admin/v1/reload", &reply, &error);
  }
  if (!ok) {
    std::fprintf(stderr, "spate ctl: %s\n", error.c_str());
    return 1;
  }
  nlohmann::json body = nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (reply.status >= 300 || body.is_discarded()) {
    std::fprintf(stderr, "spate ctl: %d: %s\n", reply.status,
                 body.is_object() && body.contains("error")
                     ? body["error"].get<std::string>().c_str()
                     : reply.body.c_str());
    return 1;
  }
  if (json) {
    std::printf("%s\n", body.dump(1).c_str());
    return 0;
  }
  if (suppression_command) {
    if (rest[1] == "remove") {
      std::printf("%s removed from the suppression list\n", rest[2].c_str());
    } else {
      std::printf("%s suppressed since %s (%s%s%s)\n", body["address"].get<std::string>().c_str(),
                  body["since"].get<std::string>().c_str(),
                  body["class"].get<std::string>().c_str(),
                  body["reason"].get<std::string>().empty() ? "" : ": ",
                  body["reason"].get<std::string>().c_str());
    }
    return 0;
  }
  if (rest[0] == "flush") {
    std::printf("flush requested: deferred mail of %s is tried now\n",
                domain.empty() ? "every domain" : domain.c_str());
    return 0;
  }
  if (rest[0] == "reload") {
    std::puts("reload requested: the log says \"spate: reloaded\" or why it was refused");
    return 0;
  }
  std::printf("%-40s %10s %8s %11s %9s\n", by == "site" ? "SITE" : "DOMAIN", "QUEUED", "OLDEST",
              "CONNECTIONS", "SUSPENDED");
  for (const nlohmann::json& row : body["rows"]) {
    const std::string oldest =
        row.contains("oldest_age_seconds") ? Age(row["oldest_age_seconds"].get<int64_t>()) : "-";
    std::printf("%-40s %10lld %8s %11lld %9s\n", row["name"].get<std::string>().c_str(),
                static_cast<long long>(row["queued"].get<int64_t>()), oldest.c_str(),
                static_cast<long long>(row["connections"].get<int64_t>()),
                row["suspended"].get<bool>() ? "yes" : "no");
  }
  return 0;
}

}  // namespace spate::daemon
