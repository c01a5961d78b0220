// core/daemon/admin_api.h
//
// The admin API's endpoints (issue 13), served by AdminServer (admin.h) on shard 0's reactor.
// JSON in and out; a refusal is {"error", "field"} with a 4xx. Query values are percent-decoded.
//
//   GET  /api/admin/v1/queue?by=domain|site|campaign   per row: queued, in_flight, connections,
//                                         suspended, oldest_age_seconds (domains), and the
//                                         delivered/deferred/failed totals (for `ctl top`)
//   POST /api/admin/v1/suspend  {"domain"|"site"|"campaign": NAME, "duration"?, "reason"?}
//   POST /api/admin/v1/resume   {"domain"|"site"|"campaign": NAME}
//   GET  /api/admin/v1/suspensions
//   POST /api/admin/v1/bounce   {"domain"|"campaign": NAME, "reason"?, "duration"? (5m)}:
//                                         answered once every shard has bounced what it holds
//   POST /api/admin/v1/flush[?domain=D]   deferred mail (of D) tried now
//   POST /api/admin/v1/reload             as SIGHUP
//   GET  /api/admin/v1/message?id=ID      each recipient's status (the spool, the records)
//   GET|DELETE /api/admin/v1/suppression?address=A, POST {"address", "reason"}: one entry
//   GET  /api/admin/v1/suppression[?limit=N]     the list, JSON
//   GET  /api/admin/v1/suppression/export        the list, CSV (queue/suppression_csv.h)
//   POST /api/admin/v1/suppression/import        CSV in; all or nothing
//   POST /api/admin/v1/drain              stop accepting (SMTP and HTTP injection), go on
//                                         delivering; answered with the drain's state
//   GET  /api/admin/v1/drain              {draining, pending_messages, inbound_connections,
//                                         drained}: drained once nothing is left
//   POST /api/inject/v1                   HTTP injection (inject_api.h), when configured
//
// Suspensions and bounces are kept in the spool's state ("control/ACTION/SCOPE/NAME"), so they
// hold across a restart: LoadControls() reads them back before recovery.
// Work that blocks (the spool on disk, the records files, a CSV of millions) runs on the API's
// own worker thread and answers back on the reactor.
// Threading: Handle() on the admin reactor; the rest as noted.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/daemon/admin.h"
#include "core/reactor.h"
#include "core/server/submission.h"
#include "core/task.h"
#include "delivery/controls.h"
#include "delivery/delivery.h"
#include "delivery/stats.h"
#include "queue/spool.h"

namespace spate::daemon {

class AdminApi {
 public:
  // What the endpoints reach; every pointer borrowed for the API's life.
  struct Context {
    Reactor* reactor = nullptr;  // the admin server's
    const std::vector<std::unique_ptr<delivery::Stats>>* stats = nullptr;
    const delivery::QueueAges* ages = nullptr;
    delivery::Controls* controls = nullptr;
    queue::Spool* spool = nullptr;
    std::string spool_path;    // for `message`: the spool read-only
    std::string records_path;  // [log] records ("" off)
    // Runs `work` on every shard's reactor with its Delivery; then `done` with the sum of what
    // they returned, on the admin reactor.
    std::function<void(std::function<size_t(delivery::Delivery&)> work,
                       UniqueFunction<void(size_t)> done)>
        each_shard;
    // Draining (POST /drain): sets *draining and stops every shard's listeners (null: 404).
    std::function<void()> drain;
    const std::atomic<bool>* draining = nullptr;
    // Submission connections open, per shard (for the drain's state).
    const std::vector<std::unique_ptr<server::Stats>>* server_stats = nullptr;
    // [cluster]: a control set (value) or lifted (nullopt) here, for the other nodes.
    std::function<void(const std::string& key, const std::optional<std::string>& value)>
        share_control;
    // POST /api/inject/v1 (null: 404).
    std::function<void(const http::Request&, AdminServer::Respond)> inject;
  };

  explicit AdminApi(Context context);
  ~AdminApi();  // joins the worker: what it was doing is answered into the void
  AdminApi(const AdminApi&) = delete;
  AdminApi& operator=(const AdminApi&) = delete;

  void Handle(const http::Request& r, AdminServer::Respond respond);

  // A control from its spool state record (key "control/ACTION/SCOPE/NAME", JSON value), as
  // Persist() writes it and [cluster] shares it; nullopt for anything else.
  static std::optional<delivery::Control> DecodeControl(std::string_view key,
                                                        std::string_view value);
  // Before recovery: the suspensions and bounces kept in the spool, back in force (what has
  // expired is deleted). How many.
  static size_t LoadControls(queue::Spool& spool, delivery::Controls& controls, int64_t now_ms);

  // Runs `work` on the worker thread; its answer goes back to the reactor.
  void Offload(std::function<http::Response()> work, AdminServer::Respond respond);

 private:
  void Queue(const http::Request& r, AdminServer::Respond respond);
  void Suspend(const http::Request& r, AdminServer::Respond respond, bool bounce);
  void Resume(const http::Request& r, AdminServer::Respond respond);
  void Suppression(const http::Request& r, AdminServer::Respond respond);
  void Message(const http::Request& r, AdminServer::Respond respond);
  http::Response DrainState() const;
  // The control's state record: written, or deleted when `lifted`.
  void Persist(const delivery::Control& c, bool lifted);

  Context ctx_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> work_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace spate::daemon
