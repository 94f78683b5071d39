// The front door's gRPC transport in C++ (gRPC's asynchronous completion-queue API, Debian's libgrpc++):
// calls are taken and forwarded as bytes by C++ threads; every decision is Python's (the handler object:
// the same rules as the grpc.aio transport, tritonfleet/frontdoor/grpc_calls.py). Built by
// tritonfleet/frontdoor/grpc_native.py.
//
// Each thread polls a completion queue of its own, and a call's server side and its upstream call share
// the queue of the thread that took it: every event of one call runs on one thread, one after the other,
// so a call's state needs no lock.
//
// The handler's methods, called with the GIL held (codes are gRPC status codes as integers):
//   unary(method, request, authorization) -> (ANSWER, bytes) | (REFUSE, code, message, retry_after)
//                                            | (FORWARD, token, wants_answer)
//   unary_done(token, code, details, answer or None) -> (ANSWER, bytes) | (REFUSE, ...) | (PASS,)
//   stream_open(method, metadata) -> (REFUSE, ...) | (FORWARD, token, metadata to send upstream)
//   stream_message(token, request) -> None (forward it) | bytes (an answer for the client instead)
//   stream_answer(token, answer) -> bytes (what the client gets)
//   stream_close(token, code, details) -> (REFUSE, ...) | (PASS,)   (not called when the client cancelled)
//   finished([(token, ended), ...])   unary calls forwarded and answered OK (ended: time.monotonic())
// PASS: the upstream's answer as it came (unary), a normal end (stream). A handler that raises ends the
// call with INTERNAL "front door error" (the traceback goes to stderr). Unary calls answered OK cost one
// turn of the GIL, not two: they are reported to finished() in batches, on the next call, after at most
// kReportMs, and whenever Python asks (Server.report()).

#include <Python.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace py = pybind11;

namespace {

enum Kind { ANSWER = 0, REFUSE = 1, FORWARD = 2, PASS = 3 };
constexpr int kListeners = 16;  // calls each queue is ready to take at once
constexpr int kReportMs = 20;   // the longest a call answered OK waits to be reported

// The GIL for a gRPC thread. Each thread keeps its Python thread state for good (a first
// PyGILState_Ensure that is never released), so that taking the GIL costs no thread-state set-up.
class Gil {
 public:
  Gil() {
    thread_local bool primed = [] {
      PyGILState_Ensure();
      PyEval_SaveThread();
      return true;
    }();
    (void)primed;
    state_ = PyGILState_Ensure();
  }
  ~Gil() { PyGILState_Release(state_); }
  Gil(const Gil&) = delete;
  Gil& operator=(const Gil&) = delete;

 private:
  PyGILState_STATE state_;
};

py::bytes ToBytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return py::bytes("", 0);
  if (slices.size() == 1) return py::bytes(reinterpret_cast<const char*>(slices[0].begin()), slices[0].size());
  size_t size = 0;
  for (const auto& s : slices) size += s.size();
  PyObject* bytes = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(size));
  if (bytes == nullptr) throw py::error_already_set();
  char* out = PyBytes_AS_STRING(bytes);
  for (const auto& s : slices) {
    std::memcpy(out, s.begin(), s.size());
    out += s.size();
  }
  return py::reinterpret_steal<py::bytes>(bytes);
}

grpc::ByteBuffer FromBytes(const py::handle& bytes) {
  char* data = nullptr;
  Py_ssize_t size = 0;
  if (PyBytes_AsStringAndSize(bytes.ptr(), &data, &size) != 0) throw py::error_already_set();
  grpc::Slice slice(data, static_cast<size_t>(size));
  return grpc::ByteBuffer(&slice, 1);
}

py::str Latin1(grpc::string_ref text) {
  return py::reinterpret_steal<py::str>(PyUnicode_DecodeLatin1(text.data(), text.size(), nullptr));
}

// The status a refusal tuple (REFUSE, code, message, retry_after) asks for; retry-after becomes trailing
// metadata. Call with the GIL held.
grpc::Status Refusal(const py::tuple& t, grpc::ServerContext* context) {
  int code = t[1].cast<int>();
  std::string message = t[2].cast<std::string>();
  std::string retry = t[3].cast<std::string>();
  if (!retry.empty()) context->AddTrailingMetadata("retry-after", retry);
  return grpc::Status(static_cast<grpc::StatusCode>(code), message);
}

const grpc::Status kFault(grpc::StatusCode::INTERNAL, "front door error");

void Report(py::error_already_set& e) {
  e.restore();
  PyErr_Print();
}

class Door;
class Proxied;

// Taking a call: one object per call, which listens first and, once a call came, forwards it (unary or a
// stream, by its method). Every operation carries one of its tags; the tag comes back to Event on the
// call's thread. The object deletes itself once no operation is outstanding.
struct Tagged {
  virtual void Fire(bool ok) = 0;
};

struct Op final : Tagged {
  Proxied* call = nullptr;
  int kind = 0;
  void Fire(bool ok) override;
};

double Monotonic() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// Calls answered OK, waiting to be reported to the handler's finished().
class Answered {
 public:
  // Add one (without the GIL); true if the list was empty.
  bool Add(py::object token) {
    std::lock_guard<std::mutex> lock(mu_);
    items_.emplace_back(std::move(token), Monotonic());
    return items_.size() == 1;
  }
  bool Empty() {
    std::lock_guard<std::mutex> lock(mu_);
    return items_.empty();
  }
  // Report what waits to handler.finished(); with the GIL held.
  void Report(py::object& handler) {
    std::vector<std::pair<py::object, double>> items;
    {
      std::lock_guard<std::mutex> lock(mu_);
      items.swap(items_);
    }
    if (items.empty()) return;
    py::list batch(items.size());
    for (size_t i = 0; i < items.size(); ++i)
      batch[i] = py::make_tuple(std::move(items[i].first), items[i].second);
    items.clear();
    try {
      handler.attr("finished")(batch);
    } catch (py::error_already_set& e) {
      e.restore();
      PyErr_Print();
    }
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<py::object, double>> items_;
};

// A thread's timer: report what waits after kReportMs when no call comes to report it before.
struct Reporter final : Tagged {
  Door* door = nullptr;
  grpc::ServerCompletionQueue* queue = nullptr;
  grpc::Alarm alarm;
  bool armed = false;
  void Arm() {
    if (armed) return;
    armed = true;
    alarm.Set(queue, std::chrono::system_clock::now() + std::chrono::milliseconds(kReportMs), this);
  }
  void Fire(bool ok) override;
};

class Door {
 public:
  Door(py::object handler, const std::string& upstream, int max_receive, std::vector<std::string> streams,
       int threads, std::map<std::string, int> upstream_args)
      : handler_(std::move(handler)), streams_(std::move(streams)), threads_(std::max(threads, 1)),
        max_receive_(max_receive) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    for (const auto& [name, value] : upstream_args) args.SetInt(name, value);
    for (int i = 0; i < threads_; ++i) {
      args.SetInt("tritonfleet.connection", i);  // a connection for each thread, not one shared
      stubs_.emplace_back(std::make_unique<grpc::GenericStub>(
          grpc::CreateCustomChannel(upstream, grpc::InsecureChannelCredentials(), args)));
    }
  }

  ~Door() { Stop(0); }

  int Start(const std::string& address);
  void Stop(double grace_s);
  void Listen(int thread);  // one more call this thread is ready to take

  bool IsStream(const std::string& method) const {
    for (const auto& s : streams_)
      if (s == method) return true;
    return false;
  }

  grpc::AsyncGenericService& service() { return service_; }
  grpc::GenericStub& stub(int i) { return *stubs_[i]; }
  grpc::ServerCompletionQueue* queue(int i) { return queues_[i].get(); }
  py::object& handler() { return handler_; }
  Answered& answered() { return answered_; }
  void AnsweredOk(int thread, py::object token) {
    answered_.Add(std::move(token));
    if (!stopping_) reporters_[thread]->Arm();
  }
  void Report() { answered_.Report(handler_); }  // with the GIL held
  // Calls taken and not yet done: the queues are shut down only once there are none (an operation
  // started on a queue that is shut down aborts the process).
  void Began() {
    std::lock_guard<std::mutex> lock(live_mu_);
    ++live_;
  }
  void Ended() {
    std::lock_guard<std::mutex> lock(live_mu_);
    if (--live_ == 0) live_cv_.notify_all();
  }

 private:
  py::object handler_;
  std::vector<std::string> streams_;
  int threads_;
  int max_receive_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
  grpc::AsyncGenericService service_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> pollers_;
  std::vector<std::unique_ptr<Reporter>> reporters_;
  Answered answered_;
  std::atomic<bool> stopping_{false};
  std::mutex live_mu_;
  std::condition_variable live_cv_;
  int live_ = 0;
};

void Reporter::Fire(bool) {
  armed = false;
  if (door->answered().Empty()) return;
  Gil gil;
  door->Report();
}

class Proxied {
 public:
  enum {
    REQUESTED, DONE, READ, WRITTEN, FINISHED, UP_STARTED, UP_READ, UP_WRITTEN, UP_WRITES_DONE, UP_FINISHED,
    OPS
  };

  Proxied(Door* door, int thread) : door_(door), thread_(thread), stream_(&context_) {
    for (int i = 0; i < OPS; ++i) {
      ops_[i].call = this;
      ops_[i].kind = i;
    }
    context_.AsyncNotifyWhenDone(Tag(DONE));
    door_->service().RequestCall(&context_, &stream_, queue(), queue(), Tag(REQUESTED));
  }

  void Event(int op, bool ok);

 private:
  void* Tag(int kind) {
    ++outstanding_;
    return &ops_[kind];
  }

  grpc::ServerCompletionQueue* queue() { return door_->queue(thread_); }
  grpc::GenericStub& stub() { return door_->stub(thread_); }

  void Handle(int op, bool ok) {
    if (op == REQUESTED) {
      if (ok) {  // else: shutting down
        door_->Began();
        began_ = true;
        door_->Listen(thread_);
        stream_mode_ = door_->IsStream(context_.method());
        if (stream_mode_)
          Open();
        else
          stream_.Read(&request_, Tag(READ));
      }
    } else if (op == DONE) {
      if (context_.IsCancelled()) {
        cancelled_ = true;
        if (upstream_open_) upstream_context_.TryCancel();
      }
    } else if (stream_mode_) {
      StreamEvent(op, ok);
    } else {
      UnaryEvent(op, ok);
    }
    if (--outstanding_ == 0) {
      if (token_) {
        Gil gil;
        token_ = py::object();
      }
      Door* door = door_;
      bool began = began_;
      delete this;
      if (began) door->Ended();
    }
  }

  // --- unary: read the request, ask Python, answer or forward; ask Python about the answer ---

  void UnaryEvent(int op, bool ok) {
    if (op == READ) {
      if (ok)
        Decide();
      else
        stream_.Finish(grpc::Status(grpc::StatusCode::INTERNAL, "no request message"), Tag(FINISHED));
    } else if (op == UP_FINISHED) {
      upstream_open_ = false;
      if (status_.ok() && !wants_answer_) {
        door_->AnsweredOk(thread_, std::move(token_));
        stream_.WriteAndFinish(answer_, grpc::WriteOptions(), grpc::Status::OK, Tag(FINISHED));
      } else {
        Upstreamed();
      }
    }
  }

  void Decide() {
    grpc::Status refusal;
    bool forward = false, answered = false;
    {
      Gil gil;
      if (!door_->answered().Empty()) door_->Report();
      try {
        py::object authorization = py::none();
        for (const auto& [name, value] : context_.client_metadata())
          if (name == "authorization") authorization = Latin1(value);
        py::tuple decision =
            door_->handler().attr("unary")(context_.method(), ToBytes(request_), authorization);
        int kind = decision[0].cast<int>();
        if (kind == ANSWER) {
          answer_ = FromBytes(decision[1]);
          answered = true;
        } else if (kind == FORWARD) {
          token_ = decision[1];
          wants_answer_ = decision[2].cast<bool>();
          forward = true;
        } else {
          refusal = Refusal(decision, &context_);
        }
      } catch (py::error_already_set& e) {
        Report(e);
        refusal = kFault;
      }
    }
    if (answered) {
      stream_.WriteAndFinish(answer_, grpc::WriteOptions(), grpc::Status::OK, Tag(FINISHED));
    } else if (!forward) {
      stream_.Finish(refusal, Tag(FINISHED));
    } else if (cancelled_) {
      stream_.Finish(grpc::Status::CANCELLED, Tag(FINISHED));
    } else {
      unary_upstream_ = stub().PrepareUnaryCall(&upstream_context_, context_.method(), request_, queue());
      unary_upstream_->StartCall();
      upstream_open_ = true;
      unary_upstream_->Finish(&answer_, &status_, Tag(UP_FINISHED));
    }
  }

  void Upstreamed() {
    grpc::Status refusal;
    grpc::ByteBuffer answer;
    bool pass = false;
    {
      Gil gil;
      try {
        py::object given =
            wants_answer_ && status_.ok() ? py::object(ToBytes(answer_)) : py::object(py::none());
        py::tuple decision = door_->handler().attr("unary_done")(
            token_, static_cast<int>(status_.error_code()), status_.error_message(), given);
        int kind = decision[0].cast<int>();
        if (kind == PASS)
          pass = true;
        else if (kind == ANSWER)
          answer = FromBytes(decision[1]);
        else
          refusal = Refusal(decision, &context_);
        token_ = py::object();
      } catch (py::error_already_set& e) {
        Report(e);
        refusal = kFault;
      }
    }
    if (pass && !status_.ok()) {
      stream_.Finish(grpc::Status(status_.error_code(), status_.error_message()), Tag(FINISHED));
    } else if (!refusal.ok()) {
      stream_.Finish(refusal, Tag(FINISHED));
    } else {
      if (!pass) answer_ = std::move(answer);
      stream_.WriteAndFinish(answer_, grpc::WriteOptions(), grpc::Status::OK, Tag(FINISHED));
    }
  }

  // --- streams: the client's messages checked one by one and written upstream (or answered on the
  // stream), the upstream's answers passed through Python to the client; a client's cancel cancels the
  // upstream call, the upstream's end ends the client's stream ---

  void Open() {
    grpc::Status refusal;
    bool go = false;
    {
      Gil gil;
      try {
        py::list metadata;
        for (const auto& [name, value] : context_.client_metadata()) {
          std::string key(name.data(), name.size());
          if (key.size() > 4 && key.compare(key.size() - 4, 4, "-bin") == 0)
            metadata.append(py::make_tuple(key, py::bytes(value.data(), value.size())));
          else
            metadata.append(py::make_tuple(key, Latin1(value)));
        }
        py::tuple decision = door_->handler().attr("stream_open")(context_.method(), metadata);
        if (decision[0].cast<int>() == FORWARD) {
          token_ = decision[1];
          for (auto item : decision[2]) {
            py::tuple pair = item.cast<py::tuple>();
            upstream_context_.AddMetadata(pair[0].cast<std::string>(), pair[1].cast<std::string>());
          }
          go = true;
        } else {
          refusal = Refusal(decision, &context_);
        }
      } catch (py::error_already_set& e) {
        Report(e);
        refusal = kFault;
      }
    }
    if (!go) {
      End(refusal);
      return;
    }
    upstream_ = stub().PrepareCall(&upstream_context_, context_.method(), queue());
    upstream_open_ = true;
    upstream_->StartCall(Tag(UP_STARTED));
  }

  void StreamEvent(int op, bool ok) {
    switch (op) {
      case UP_STARTED:
        if (ok) {
          stream_.Read(&from_client_, Tag(READ));
          upstream_->Read(&from_upstream_, Tag(UP_READ));
        } else {
          UpstreamEnded();
        }
        break;
      case READ:
        if (ok)
          FromClient();
        else
          ClientDoneWriting();
        break;
      case UP_WRITTEN:
        upstream_writing_ = false;
        if (!ok || upstream_ended_ || ending_)
          ClientDoneWriting();  // no more reading from the client: the upstream's status follows
        else if (client_eof_)
          WritesDone();
        else
          stream_.Read(&from_client_, Tag(READ));
        break;
      case UP_WRITES_DONE:
        upstream_writing_ = false;
        break;
      case UP_READ:
        if (ok)
          FromUpstream();
        else
          UpstreamEnded();
        break;
      case UP_FINISHED:
        upstream_open_ = false;
        UpstreamFinished();
        break;
      case WRITTEN:
        writing_ = false;
        to_client_.pop_front();
        if (!ok) {  // the client is gone
          to_client_.clear();
          if (upstream_open_) upstream_context_.TryCancel();
        }
        Flush();
        break;
      default:  // FINISHED
        break;
    }
  }

  void FromClient() {
    bool fault = false, forward = false;
    grpc::ByteBuffer answer;
    {
      Gil gil;
      try {
        py::object reply = door_->handler().attr("stream_message")(token_, ToBytes(from_client_));
        forward = reply.is_none();
        if (!forward) answer = FromBytes(reply);
      } catch (py::error_already_set& e) {
        Report(e);
        fault = true;
      }
    }
    if (fault) {
      Fail();
    } else if (!forward) {
      ToClient(std::move(answer));
      if (!ending_) stream_.Read(&from_client_, Tag(READ));
    } else if (!upstream_ended_ && !ending_) {
      upstream_writing_ = true;
      upstream_->Write(from_client_, Tag(UP_WRITTEN));  // the next read starts once it is written
    }
  }

  void ClientDoneWriting() {
    if (client_eof_) return;
    client_eof_ = true;
    WritesDone();
  }

  void WritesDone() {
    if (upstream_writing_ || upstream_ended_ || !upstream_open_ || writes_done_) return;
    writes_done_ = upstream_writing_ = true;
    upstream_->WritesDone(Tag(UP_WRITES_DONE));
  }

  void FromUpstream() {
    grpc::ByteBuffer answer;
    bool fault = false;
    {
      Gil gil;
      try {
        answer = FromBytes(door_->handler().attr("stream_answer")(token_, ToBytes(from_upstream_)));
      } catch (py::error_already_set& e) {
        Report(e);
        fault = true;
      }
    }
    if (fault) {
      Fail();
      return;
    }
    ToClient(std::move(answer));
    from_upstream_.Clear();
    upstream_->Read(&from_upstream_, Tag(UP_READ));
  }

  // The upstream sends no more (or never started): read its status.
  void UpstreamEnded() {
    if (upstream_ended_) return;
    upstream_ended_ = true;
    upstream_->Finish(&status_, Tag(UP_FINISHED));
  }

  void UpstreamFinished() {
    grpc::Status end = grpc::Status::OK;
    if (failed_) {
      end = kFault;
    } else if (cancelled_) {
      end = grpc::Status::CANCELLED;
    } else {
      Gil gil;
      try {
        py::tuple decision = door_->handler().attr("stream_close")(
            token_, static_cast<int>(status_.error_code()), status_.error_message());
        if (decision[0].cast<int>() != PASS) end = Refusal(decision, &context_);
      } catch (py::error_already_set& e) {
        Report(e);
        end = kFault;
      }
    }
    End(end);
  }

  // A handler raised: end the upstream call, then the client's with INTERNAL.
  void Fail() {
    failed_ = true;
    if (upstream_open_) upstream_context_.TryCancel();
  }

  void ToClient(grpc::ByteBuffer message) {
    if (ending_) return;
    to_client_.push_back(std::move(message));
    Flush();
  }

  // Write the next message to the client, or end the stream once every message is written.
  void Flush() {
    if (writing_ || finished_) return;
    if (!to_client_.empty()) {
      writing_ = true;
      stream_.Write(to_client_.front(), Tag(WRITTEN));
    } else if (ending_) {
      finished_ = true;
      stream_.Finish(final_, Tag(FINISHED));
    }
  }

  void End(const grpc::Status& status) {
    if (ending_) return;
    final_ = status;
    Flush();  // what is queued goes first
    ending_ = true;
    Flush();
  }

  Door* door_;
  int thread_;
  Op ops_[OPS];
  int outstanding_ = 0;
  grpc::GenericServerContext context_;
  grpc::GenericServerAsyncReaderWriter stream_;
  grpc::ClientContext upstream_context_;
  py::object token_;
  grpc::Status status_;
  bool began_ = false, stream_mode_ = false, cancelled_ = false, upstream_open_ = false;
  // unary
  grpc::ByteBuffer request_, answer_;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> unary_upstream_;
  bool wants_answer_ = false;
  // streams
  grpc::ByteBuffer from_client_, from_upstream_;
  std::deque<grpc::ByteBuffer> to_client_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> upstream_;
  grpc::Status final_;
  bool writing_ = false, upstream_writing_ = false, upstream_ended_ = false, client_eof_ = false;
  bool writes_done_ = false, ending_ = false, finished_ = false, failed_ = false;
};

void Op::Fire(bool ok) { call->Event(kind, ok); }
void Proxied::Event(int op, bool ok) { Handle(op, ok); }

void Door::Listen(int thread) {
  if (!stopping_) new Proxied(this, thread);
}

int Door::Start(const std::string& address) {
  py::gil_scoped_release release;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(max_receive_);
  builder.SetMaxSendMessageSize(-1);
  builder.RegisterAsyncGenericService(&service_);
  for (int i = 0; i < threads_; ++i) queues_.push_back(builder.AddCompletionQueue());
  server_ = builder.BuildAndStart();
  if (!server_) {
    for (auto& q : queues_) q->Shutdown();
    for (auto& q : queues_) {
      void* tag;
      bool ok;
      while (q->Next(&tag, &ok)) {
      }
    }
    queues_.clear();
    return 0;
  }
  for (int i = 0; i < threads_; ++i) {
    auto reporter = std::make_unique<Reporter>();
    reporter->door = this;
    reporter->queue = queues_[i].get();
    reporters_.push_back(std::move(reporter));
  }
  for (int i = 0; i < threads_; ++i) {
    for (int k = 0; k < kListeners; ++k) Listen(i);
    grpc::ServerCompletionQueue* queue = queues_[i].get();
    pollers_.emplace_back([queue] {
      void* tag;
      bool ok;
      while (queue->Next(&tag, &ok)) static_cast<Tagged*>(tag)->Fire(ok);
    });
  }
  return port;
}

void Door::Stop(double grace_s) {
  if (!server_) return;
  {
    py::gil_scoped_release release;
    stopping_ = true;
    // After grace_s every call still running is cancelled (and so its upstream call); the pollers go on
    // until each call has ended.
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000)));
    {
      std::unique_lock<std::mutex> lock(live_mu_);
      live_cv_.wait(lock, [this] { return live_ == 0; });
    }
    for (auto& q : queues_) q->Shutdown();
    for (auto& t : pollers_) t.join();
    pollers_.clear();
    server_.reset();
    queues_.clear();
    reporters_.clear();
  }
  Report();
}

}  // namespace

PYBIND11_MODULE(_grpc_native, m) {
  m.doc() = "The front door's gRPC transport in C++ (see tritonfleet/frontdoor/grpc_native.py).";
  m.attr("ANSWER") = static_cast<int>(ANSWER);
  m.attr("REFUSE") = static_cast<int>(REFUSE);
  m.attr("FORWARD") = static_cast<int>(FORWARD);
  m.attr("PASS") = static_cast<int>(PASS);
  m.attr("GRPC_VERSION") = grpc::Version();
  py::class_<Door>(m, "Server")
      .def(py::init<py::object, const std::string&, int, std::vector<std::string>, int,
                    std::map<std::string, int>>(),
           py::arg("handler"), py::arg("upstream"), py::arg("max_receive"), py::arg("streams"),
           py::arg("threads") = 2, py::arg("upstream_args") = std::map<std::string, int>())
      .def("start", &Door::Start, py::arg("address"), "Listen on address; the bound port, 0 if it cannot.")
      .def("stop", &Door::Stop, py::arg("grace_s") = 1.0, "Stop: calls still running get grace_s seconds.")
      .def("report", &Door::Report, "Report the calls answered OK that wait to be (to finished()).");
}
