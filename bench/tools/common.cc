#include "bench/tools/common.h"

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

namespace spate::bench {

uint64_t WallNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t FindTimestamp(std::string_view head) {
  // Only the header section: a body line that happens to look like the header must not count.
  size_t end = head.find("\r\n\r\n");
  if (end != std::string_view::npos)
    head = head.substr(0, end + 2);
  size_t pos = 0;
  for (;;) {
    pos = head.find(kTimestampHeader, pos);
    if (pos == std::string_view::npos)
      return 0;
    if (pos == 0 || head[pos - 1] == '\n')
      break;
    pos += kTimestampHeader.size();
  }
  uint64_t v = 0;
  size_t digits = 0;
  for (size_t i = pos + kTimestampHeader.size(); i < head.size(); ++i) {
    char c = head[i];
    if (c < '0' || c > '9')
      break;
    v = v * 10 + static_cast<uint64_t>(c - '0');
    ++digits;
  }
  return digits == 0 || digits > kTimestampDigits ? 0 : v;
}

FlagSet::FlagSet(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

void FlagSet::String(const char* name, std::string* value, const char* help) {
  flags_[name] = Flag{Kind::kString, value, help, *value};
  order_.push_back(name);
}

void FlagSet::Uint(const char* name, uint64_t* value, const char* help) {
  flags_[name] = Flag{Kind::kUint, value, help, std::to_string(*value)};
  order_.push_back(name);
}

void FlagSet::Double(const char* name, double* value, const char* help) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", *value);
  flags_[name] = Flag{Kind::kDouble, value, help, buf};
  order_.push_back(name);
}

void FlagSet::Bool(const char* name, bool* value, const char* help) {
  flags_[name] = Flag{Kind::kBool, value, help, *value ? "true" : "false"};
  order_.push_back(name);
}

bool FlagSet::Set(const std::string& name, Flag& flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  switch (flag.kind) {
    case Kind::kString:
      *static_cast<std::string*>(flag.value) = text;
      return true;
    case Kind::kUint: {
      unsigned long long v = std::strtoull(text, &end, 10);
      if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
        break;
      *static_cast<uint64_t*>(flag.value) = v;
      return true;
    }
    case Kind::kDouble: {
      double v = std::strtod(text, &end);
      if (errno != 0 || end == text || *end != '\0')
        break;
      *static_cast<double*>(flag.value) = v;
      return true;
    }
    case Kind::kBool:
      if (std::strcmp(text, "true") == 0 || std::strcmp(text, "1") == 0 ||
          std::strcmp(text, "on") == 0) {
        *static_cast<bool*>(flag.value) = true;
        return true;
      }
      if (std::strcmp(text, "false") == 0 || std::strcmp(text, "0") == 0 ||
          std::strcmp(text, "off") == 0) {
        *static_cast<bool*>(flag.value) = false;
        return true;
      }
      break;
  }
  std::fprintf(stderr, "%s: bad value for --%s: '%s'\n", program_.c_str(), name.c_str(), text);
  return false;
}

bool FlagSet::Parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      PrintUsage(false);
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) {
      std::fprintf(stderr, "%s: unexpected argument '%s'\n", program_.c_str(), arg.c_str());
      PrintUsage(true);
      return false;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    auto it = flags_.find(name);
    if (it == flags_.end() && name.rfind("no-", 0) == 0 && !has_value) {
      auto neg = flags_.find(name.substr(3));
      if (neg != flags_.end() && neg->second.kind == Kind::kBool) {
        *static_cast<bool*>(neg->second.value) = false;
        continue;
      }
    }
    if (it == flags_.end()) {
      std::fprintf(stderr, "%s: unknown flag --%s\n", program_.c_str(), name.c_str());
      PrintUsage(true);
      return false;
    }
    if (!has_value) {
      if (it->second.kind == Kind::kBool) {
        *static_cast<bool*>(it->second.value) = true;
        continue;
      }
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s: --%s wants a value\n", program_.c_str(), name.c_str());
        return false;
      }
      value = argv[++i];
    }
    if (!Set(name, it->second, value.c_str()))
      return false;
  }
  return true;
}

void FlagSet::PrintUsage(bool to_stderr) const {
  FILE* out = to_stderr ? stderr : stdout;
  std::fprintf(out, "usage: %s [flags]\n%s\n\nflags:\n", program_.c_str(), summary_.c_str());
  for (const std::string& name : order_) {
    const Flag& f = flags_.at(name);
    std::fprintf(out, "  --%-22s %s (default: %s)\n", name.c_str(), f.help.c_str(),
                 f.default_text.empty() ? "\"\"" : f.default_text.c_str());
  }
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

void JsonObject::Key(std::string_view key) {
  if (!body_.empty())
    body_ += ", ";
  body_ += JsonString(key);
  body_ += ": ";
}

JsonObject& JsonObject::Add(std::string_view key, uint64_t v) {
  Key(key);
  body_ += std::to_string(v);
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, int64_t v) {
  Key(key);
  body_ += std::to_string(v);
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, double v) {
  Key(key);
  if (!std::isfinite(v)) {
    body_ += "null";  // JSON has no NaN or infinity
    return *this;
  }
  char buf[48];
  // Four decimals for rates and epoch seconds; six significant digits for small fractions.
  std::snprintf(buf, sizeof buf, v != 0 && std::fabs(v) < 1 ? "%.6g" : "%.4f", v);
  body_ += buf;
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, bool v) {
  Key(key);
  body_ += v ? "true" : "false";
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, std::string_view v) {
  Key(key);
  body_ += JsonString(v);
  return *this;
}

JsonObject& JsonObject::Raw(std::string_view key, std::string_view json) {
  Key(key);
  body_ += json;
  return *this;
}

bool WriteFileAtomically(const std::string& path, std::string_view text) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return false;
  size_t done = 0;
  while (done < text.size()) {
    ssize_t w = write(fd, text.data() + done, text.size() - done);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      close(fd);
      return false;
    }
    done += static_cast<size_t>(w);
  }
  close(fd);
  return rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace spate::bench
