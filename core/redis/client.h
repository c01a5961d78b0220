// core/redis/client.h
//
// Client: a shard's connection to Redis (or Valkey), for the state a fleet of spate nodes
// shares ([cluster] redis, delivery/cluster.h). The socket is a Connection on the shard's
// reactor (io_uring): nothing blocks. hiredis (Debian's libhiredis) does the protocol, sans-I/O:
// redisFormatCommandArgv() writes each command, its redisReader parses the replies (RESP2).
// Commands are pipelined: sent at once, answered in order.
//
// The connection is made at Start() and made again, every reconnect_interval, while it is down.
// A command while it is down, or one whose reply does not come within command_timeout (the
// connection is then dropped: the server is taken as gone), fails at once, so a caller can fall
// back instead of waiting. on_state hears of every change, up or down, with the reason.
// Threading: one per shard, on its reactor thread; `done` runs there, never inside Command().
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/net.h"
#include "core/reactor.h"
#include "core/redis/reply.h"
#include "core/task.h"

namespace spate::redis {

class Client {
 public:
  struct Options {
    Endpoint server;  // [cluster] redis
    Seconds connect_timeout{2};
    Seconds command_timeout{2};
    Seconds reconnect_interval{1};
    size_t max_reply_bytes = 16 << 20;  // a reply larger than this drops the connection
    // AUTH on each connection before any command (Redis 6 ACL user, or the requirepass
    // password alone when username is empty). "": none.
    std::string username;
    std::string password;
  };
  // `ok`: false when the command could not be answered (no connection, a timeout); `error`
  // says why. A Redis error reply is ok, with reply.type == kError.
  using Done = UniqueFunction<void(bool ok, Reply reply, const std::string& error)>;
  using StateChange = std::function<void(bool up, const std::string& why)>;

  Client(Reactor& reactor, Options options, StateChange on_state = {});
  ~Client();  // the connection goes; commands still out are dropped (their `done` never runs)
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void Start();
  void Command(std::vector<std::string> args, Done done);
  bool up() const { return up_; }

 private:
  class Conn;
  struct Pending {
    Done done;
    Reactor::Clock::time_point deadline;
  };

  void Connect();
  void OnConnected(int error);
  void Up();
  void OnData(std::string_view data);
  void OnConnClosed(int error);
  void Down(const std::string& why);
  void ArmDeadline();
  void FailLater(Done done, std::string why);

  Reactor& reactor_;
  Options options_;
  StateChange on_state_;
  Conn* conn_ = nullptr;  // the connection (owns itself), null while down
  bool up_ = false;
  bool started_ = false;
  bool reported_down_ = false;  // this outage was logged and told
  std::string down_reason_ = "not connected yet";
  std::unique_ptr<ReplyReader> reader_;  // one per connection
  std::deque<Pending> pending_;
  Reactor::TimerId deadline_timer_;
  Reactor::TimerId reconnect_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace spate::redis
