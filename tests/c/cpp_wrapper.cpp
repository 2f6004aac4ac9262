// cpp_wrapper.cpp: the C++ wrapper (bindings/cpp/stagebus.hpp) over the
// newer entry points, built as C++17 with warnings as errors.
//
//  1. Client::on_unknown_message and Client::send_custom: the broker's
//     answer to a custom message reaches the handler as kind "result"
//     with the id sent; replacing the handler destroys the old one.
//  2. Args::set with a std::string / std::string_view and
//     Value::string(std::string_view) keep NUL characters (the _n
//     setters); a const char * still ends at its NUL.
//  3. Stage::name.
//  4. Client::subscribe_waiting: a wait that expires is
//     SB_NO_SUCH_SESSION; a subscribe made before the session is
//     published is answered once it is.
//  5. set_log_handler: a record with its level, target, message and
//     fields; an empty handler stops logging.
//  6. Client::set_reconnect, add_address, set_reconnect_buffer,
//     set_reconnect_restore, on_connection_event: the broker is freed and
//     a new one listens on the same address; the service comes back by
//     itself and the caller's RemoteStage works again.
//  7. Client::call and Client::call_sync: calls by name without a
//     subscribe; the answer, the error statuses as Error, a timeout, the
//     refusal inside a callback; the handler is destroyed after the last
//     response.
//  8. Signals and one-way requests: Client::add_match / remove_match /
//     emit_signal, RemoteStage::post, Served::expects_answer; watches
//     and name modes: Client::watch / unwatch, Stage::publish(mode).
//  9. BrokerOptions and ClientOptions (named tokens, socket mode, a
//     policy file, a client name); the caller identity a publisher sees;
//     a publish the policy denies.
// 10. TLS: BrokerOptions::tls_cert / tls_client_ca, ClientOptions::tls_ca
//     / tls_cert (certificates from $STAGEBUS_TEST_TLS): a call through
//     tls:// whose publisher sees the identity CN=alice; a client without
//     a certificate is refused and counted.
#include "check.h"
#include "stagebus.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace std::string_literals;

namespace {

struct Seen {
    std::string kind;
    std::uint64_t id = 0;
    std::string payload;
};

void unknown_messages()
{
    stagebus::Loop loop;
    stagebus::Broker broker(loop, {"tcp://127.0.0.1:0"});
    broker.set_ping(std::chrono::milliseconds(100), 2);
    // Limits by name: set, read, and a bad name thrown as an Error.
    CHECK_INT(broker.limit("max-hello-frame"), 512);
    broker.set_limit("max-unauthenticated", 64);
    CHECK_INT(broker.limit("max-unauthenticated"), 64);
    CHECK_INT(broker.limits_exceeded(), 0);
    {
        bool refused = false;
        try {
            broker.set_limit("max-nothing", 1);
        } catch (const stagebus::Error &e) {
            refused = e.status() == SB_INVALID_ARGUMENT;
        }
        CHECK(refused);
    }
    bool connected = false;
    stagebus::Client client(loop, broker.address(),
                            [&](sb_status st, std::uint64_t, std::string_view) {
                                CHECK_ST(st, SB_OK);
                                connected = true;
                            });
    RUN_UNTIL(loop.raw(), connected);

    std::vector<Seen> first, second;
    // The handler's captures are destroyed when it is replaced.
    auto alive = std::make_shared<int>(0);
    std::weak_ptr<int> watch = alive;
    client.on_unknown_message(
        [&first, alive](std::string_view kind, std::uint64_t id, std::string_view payload) {
            first.push_back(Seen{std::string(kind), id, std::string(payload)});
        });
    alive.reset();
    client.send_custom("frob", 42, "a\0b"s);
    client.send_custom("frob", UINT64_MAX);
    RUN_UNTIL(loop.raw(), first.size() == 2);
    CHECK_STR(first[0].kind.c_str(), "result");
    CHECK(first[0].id == 42);
    CHECK_STR(first[0].payload.c_str(), "protocol: Unknown message type 'frob'");
    CHECK(first[1].id == UINT64_MAX);
    OK("Client::send_custom's answer reaches Client::on_unknown_message as 'result' "
       "with the id sent");

    CHECK(!watch.expired());
    client.on_unknown_message(
        [&second](std::string_view kind, std::uint64_t id, std::string_view payload) {
            second.push_back(Seen{std::string(kind), id, std::string(payload)});
        });
    CHECK(watch.expired());
    client.send_custom("again", 7);
    RUN_UNTIL(loop.raw(), second.size() == 1);
    CHECK(first.size() == 2 && second[0].id == 7);
    OK("replacing the handler destroys the old one; only the new one hears later answers");

    bool threw = false;
    try {
        client.on_unknown_message({});
    } catch (const stagebus::Error &e) {
        threw = e.status() == SB_NULL_ARGUMENT;
    }
    CHECK(threw);
    // Liveness settings reach the client; an idle client answering the
    // broker's pings stays connected.
    client.set_ping(std::chrono::milliseconds(100), 2);
    // The last answer request goes out before the close completes.
    client.set_linger(std::chrono::milliseconds(2000));
    client.send_custom("last", 8);
    int closed = 0;
    sb_status close_status = SB_PANIC;
    client.close_gracefully([&](sb_status st, std::string_view) {
        close_status = st;
        closed++;
    });
    CHECK(closed == 0);
    RUN_UNTIL(loop.raw(), closed == 1);
    CHECK_ST(close_status, SB_OK);
    OK("Client::close_gracefully reports SB_OK once the output left");
    threw = false;
    try {
        client.send_custom("frob", 1);
    } catch (const stagebus::Error &e) {
        threw = e.status() == SB_BROKER_GONE;
    }
    CHECK(threw);
    OK("an empty handler throws SB_NULL_ARGUMENT; send_custom after close throws "
       "SB_BROKER_GONE");
}

void strings_and_names()
{
    const std::string with_nul = "a\0b\0\xc3\xa9"s;
    CHECK(with_nul.size() == 6);

    stagebus::Args args;
    args.set("string", with_nul);
    args.set("view", std::string_view(with_nul));
    args.set("c string", with_nul.c_str());
    args.set("value", stagebus::Value::string(std::string_view(with_nul)));
    args.set("plain", stagebus::Value::string("plain"));
    CHECK(args.get<std::string>("string") == with_nul);
    CHECK(args.get<std::string>("view") == with_nul);
    CHECK(args.get<std::string>("c string") == "a");
    CHECK(args.get<std::string>("value") == with_nul);
    CHECK(args.get<std::string>("plain") == "plain");
    OK("std::string / string_view text keeps its NULs; a const char * ends at the first");

    bool threw = false;
    try {
        stagebus::Value::string(std::string_view("\xff", 1));
    } catch (const stagebus::Error &e) {
        threw = e.status() == SB_INVALID_ARGUMENT;
    }
    CHECK(threw);
    OK("Value::string of bytes that are not UTF-8 throws");

    stagebus::Loop loop;
    stagebus::Stage stage(loop, "Greeter \xe2\x9c\x93");
    CHECK(stage.name() == "Greeter \xe2\x9c\x93");
    OK("Stage::name");
}

void waiting_for_a_name()
{
    stagebus::Loop loop;
    stagebus::Broker broker(loop, {"tcp://127.0.0.1:0"});
    stagebus::Client caller(loop, broker.address());
    stagebus::Client service(loop, broker.address());

    int expired = 0;
    std::string message;
    caller.subscribe_waiting("Never", std::chrono::milliseconds(30),
                             [&](sb_status st, stagebus::RemoteStage remote,
                                 std::string_view m) {
                                 CHECK_ST(st, SB_NO_SUCH_SESSION);
                                 CHECK(!remote);
                                 message = std::string(m);
                                 expired++;
                             });
    RUN_UNTIL(loop.raw(), expired > 0);
    CHECK(expired == 1);
    CHECK_STR(message.c_str(), "Session 'Never' was not published within 30 ms");
    OK("Client::subscribe_waiting: an expired wait is SB_NO_SUCH_SESSION");

    int answered = 0;
    caller.subscribe_waiting("Svc", std::chrono::milliseconds(60000),
                             [&](sb_status st, stagebus::RemoteStage remote,
                                 std::string_view) {
                                 CHECK_ST(st, SB_OK);
                                 CHECK(remote);
                                 answered++;
                             });
    stagebus::Stage stage(loop, "Svc");
    stage.on("echo", [](stagebus::Ctx &) {});
    stage.publish(service, "Svc", {"echo"});
    RUN_UNTIL(loop.raw(), answered > 0);
    CHECK(answered == 1);
    OK("Client::subscribe_waiting made before the publish is answered once it comes");
}


// Served::time_left reads the caller's timeout; without one it is empty;
// a child made while serving inherits it (issue 12, item 3).
void deadlines()
{
    stagebus::Loop loop;
    stagebus::Stage stage(loop, "Clock");
    std::optional<std::chrono::milliseconds> seen, child_seen;
    stagebus::Request child;
    int answers = 0;
    stage.on("look", [&](const stagebus::Ctx &ctx) {
        seen = ctx.req().time_left();
        ctx.req().ret();
    });
    stage.on("inner", [&](const stagebus::Ctx &ctx) {
        child_seen = ctx.req().time_left();
        ctx.req().ret();
    });
    stage.on("run", [&](const stagebus::Ctx &ctx) {
        seen = ctx.req().time_left();
        child = stagebus::RequestBuilder(stage, "inner")
                    .on("return", [&](const stagebus::Ctx &c) { c.req().ret(); })
                    .send();
    });
    auto ask = [&](const char *method, std::uint64_t timeout_ms) {
        seen.reset();
        child_seen.reset();
        int before = answers;
        stagebus::RequestBuilder b(stage, method);
        if (timeout_ms > 0)
            b.timeout_ms(timeout_ms);
        auto req = b.fallback([&](const stagebus::Ctx &) { answers++; }).send();
        RUN_UNTIL(loop.raw(), answers == before + 1);
    };
    ask("look", 20000);
    CHECK(seen && seen->count() > 0 && seen->count() <= 20000);
    ask("look", 0);
    CHECK(!seen);
    OK("Served::time_left reads the caller's timeout, empty without one");
    ask("run", 20000);
    CHECK(seen && child_seen && child_seen->count() > 0 && *child_seen <= *seen);
    OK("a request made while serving inherits the deadline");

    // Through a broker: the client's default deadline reaches the callee,
    // which also sees the caller's own id of the request.
    stagebus::Broker broker(loop, {"tcp://127.0.0.1:0"});
    stagebus::Client service(loop, broker.address());
    stagebus::Client caller(loop, broker.address());
    std::uint64_t served_caller_id = 0;
    stage.on("whose", [&](const stagebus::Ctx &ctx) {
        seen = ctx.req().time_left();
        served_caller_id = ctx.req().caller_id();
        ctx.req().ret();
    });
    stage.publish(service, "Clock", {"whose"});
    stagebus::RemoteStage remote;
    caller.subscribe_waiting("Clock", std::chrono::milliseconds(20000),
                             [&](sb_status st, stagebus::RemoteStage r, std::string_view) {
                                 CHECK_ST(st, SB_OK);
                                 remote = std::move(r);
                             });
    RUN_UNTIL(loop.raw(), bool(remote));
    caller.set_default_timeout(std::chrono::milliseconds(20000));
    seen.reset();
    int before = answers;
    auto req = stagebus::RequestBuilder(remote, "whose")
                   .fallback([&](const stagebus::Ctx &) { answers++; })
                   .send();
    RUN_UNTIL(loop.raw(), answers == before + 1);
    CHECK(seen && seen->count() > 0 && seen->count() <= 20000);
    CHECK(served_caller_id == req.id());
    OK("Client::set_default_timeout reaches the callee; Served::caller_id is the caller's id");

    stagebus::Value local = broker.report();
    CHECK(local.view().map().get<std::int64_t>("uptime_ms") >= 0);
    std::int64_t calls = local.view().map().value("totals").map().get<std::int64_t>("calls");
    CHECK(calls >= 1);
    std::int64_t remote_calls = -1;
    caller.stats([&](sb_status st, stagebus::ValueRef report, std::string_view) {
        CHECK_ST(st, SB_OK);
        remote_calls = report.map().value("totals").map().get<std::int64_t>("calls");
    });
    RUN_UNTIL(loop.raw(), remote_calls >= 0);
    CHECK(remote_calls == calls);
    std::string text = broker.report_prometheus();
    CHECK(text.find("\nstagebus_calls_total " + std::to_string(calls) + "\n") != std::string::npos);
    OK("Broker::report, Client::stats and Broker::report_prometheus agree");

    stagebus::Client watcher(loop, broker.address());
    std::vector<std::string> taps;
    sb_status answer = SB_PANIC;
    watcher.monitor(
        "Clock", true,
        [&](stagebus::ValueRef e) {
            taps.push_back(std::string(e.map().get<std::string_view>("kind")) + " " +
                           std::string(e.map().get<std::string_view>("name")));
        },
        [&](sb_status st, std::string_view) { answer = st; });
    RUN_UNTIL(loop.raw(), answer != SB_PANIC);
    CHECK_ST(answer, SB_OK);
    before = answers;
    auto watched = stagebus::RequestBuilder(remote, "whose")
                       .fallback([&](const stagebus::Ctx &) { answers++; })
                       .send();
    RUN_UNTIL(loop.raw(), answers == before + 1 && taps.size() >= 2);
    CHECK(taps[0] == "deliver whose");
    CHECK(taps[1] == "result return");
    OK("Client::monitor sees a call's deliver and result");
}

void logging()
{
    struct Record {
        sb_log_level level;
        std::string target, message;
        std::vector<std::pair<std::string, std::string>> fields;
    };
    auto records = std::make_shared<std::vector<Record>>();
    stagebus::set_log_handler(
        [records](sb_log_level level, std::string_view target, std::string_view message,
                  const std::vector<stagebus::LogField> &fields) {
            Record r{level, std::string(target), std::string(message), {}};
            for (const auto &f : fields)
                r.fields.emplace_back(std::string(f.key), std::string(f.value));
            records->push_back(std::move(r));
        },
        SB_LOG_WARN);
    {
        stagebus::Loop loop;
        stagebus::Stage stage(loop, "Quiet");
        stage.on("work", [](const stagebus::Ctx &ctx) { ctx.req().ret("done", stagebus::ArgsRef()); });
        auto req = stagebus::RequestBuilder(stage, "work").send();
        RUN_UNTIL(loop.raw(), !records->empty());
    }
    const Record &r = records->front();
    CHECK(r.level == SB_LOG_WARN);
    CHECK(r.target == "stagebus::request");
    CHECK(r.message.find("unhandled 'done'") != std::string::npos);
    bool has_method = false;
    for (const auto &f : r.fields)
        has_method = has_method || (f.first == "method" && f.second == "work");
    CHECK(has_method);
    stagebus::set_log_handler(nullptr);
    CHECK(records.use_count() == 1);
    OK("set_log_handler gets an unhandled response with its fields; an empty handler "
       "stops logging and destroys the old one");
}

void reconnect()
{
    stagebus::Loop loop;
    auto broker = std::make_unique<stagebus::Broker>(
        loop, std::vector<std::string>{"tcp://127.0.0.1:0"});
    const std::string address = broker->address();
    stagebus::Client service(loop, address);
    stagebus::Client caller(loop, address);
    for (const stagebus::Client *c : {&service, &caller}) {
        c->set_reconnect(std::chrono::milliseconds(20), std::chrono::milliseconds(200));
        c->set_reconnect_buffer(false, 64);
        c->set_reconnect_restore(std::chrono::milliseconds(5000),
                                 std::chrono::milliseconds(20000));
    }
    caller.add_address(address);
    std::vector<std::string> events;
    caller.on_connection_event([&](sb_connection_event event, std::string_view session,
                                   sb_status st, std::string_view) {
        CHECK(session.empty());
        events.push_back(event == SB_CONNECTION_DISCONNECTED   ? "disconnected"
                         : event == SB_CONNECTION_RECONNECTED ? "reconnected"
                                                                : "other");
        if (event == SB_CONNECTION_RECONNECTED)
            CHECK_ST(st, SB_OK);
    });
    stagebus::Stage stage(loop, "Echo");
    stage.on("echo", [](const stagebus::Ctx &ctx) { ctx.req().ret(); });
    stage.publish(service, "Echo", {"echo"});
    stagebus::RemoteStage remote;
    caller.subscribe_waiting("Echo", std::chrono::milliseconds(20000),
                             [&](sb_status st, stagebus::RemoteStage r, std::string_view) {
                                 CHECK_ST(st, SB_OK);
                                 remote = std::move(r);
                             });
    RUN_UNTIL(loop.raw(), bool(remote));
    int answers = 0;
    sb_status last = SB_PANIC;
    auto ask = [&]() {
        int before = answers;
        auto req = stagebus::RequestBuilder(remote, "echo")
                       .fallback([&](const stagebus::Ctx &ctx) {
                           last = ctx.rsp().error();
                           answers++;
                       })
                       .send();
        RUN_UNTIL(loop.raw(), answers == before + 1);
    };
    ask();
    CHECK_ST(last, SB_OK);

    broker.reset();
    RUN_UNTIL(loop.raw(), events.size() == 1);
    broker = std::make_unique<stagebus::Broker>(loop, std::vector<std::string>{address});
    RUN_UNTIL(loop.raw(), events.size() == 2);
    CHECK(events[0] == "disconnected" && events[1] == "reconnected");
    // The service may come back after the caller: ask until it answers.
    for (int i = 0; i < 1000; i++) {
        ask();
        if (last == SB_OK)
            break;
        CHECK_ST(last, SB_NO_SUCH_SESSION);
        double until = now_ms() + 10;
        RUN_UNTIL(loop.raw(), now_ms() >= until);
    }
    CHECK_ST(last, SB_OK);
    OK("Client::set_reconnect: the broker came back on the same address, the service "
       "published again, the old RemoteStage answers");

    caller.disable_reconnect();
    bool threw = false;
    try {
        caller.add_address(address);
    } catch (const stagebus::Error &e) {
        threw = e.status() == SB_INVALID_STATE;
    }
    CHECK(threw);
    OK("Client::add_address with reconnecting off throws SB_INVALID_STATE");
}

void calls_by_name()
{
    stagebus::Loop loop;
    stagebus::Broker broker(loop, {"tcp://127.0.0.1:0"});
    stagebus::Client service(loop, broker.address());
    stagebus::Client caller(loop, broker.address());
    stagebus::Stage stage(loop, "Svc");
    std::optional<stagebus::ServedRef> kept;
    sb_status nested = SB_OK;
    stage.on("echo", [](const stagebus::Ctx &ctx) { ctx.req().ret(ctx.args()); });
    stage.on("hang", [&](const stagebus::Ctx &ctx) { kept = ctx.req().ref(); });
    stage.on("nested", [&](const stagebus::Ctx &ctx) {
        try {
            caller.call_sync("Svc", "echo");
        } catch (const stagebus::Error &e) {
            nested = e.status();
        }
        ctx.req().ret();
    });
    bool published = false;
    stage.publish(service, "Svc", {"echo", "hang", "nested"}, [&](sb_status st, std::string_view) {
        CHECK_ST(st, SB_OK);
        published = true;
    });
    RUN_UNTIL(loop.raw(), published);

    stagebus::Args a;
    a.set("text", "hi");
    stagebus::Args reply = caller.call_sync("Svc", "echo", a, std::chrono::milliseconds(20000));
    CHECK_STR(reply.get<std::string>("text").c_str(), "hi");
    OK("Client::call_sync returns the return's args");

    auto status_of = [&](const char *session, const char *method, std::int64_t ms) {
        try {
            caller.call_sync(session, method, stagebus::ArgsRef(), std::chrono::milliseconds(ms));
        } catch (const stagebus::Error &e) {
            return e.status();
        }
        return SB_OK;
    };
    CHECK_ST(status_of("Nobody", "echo", 20000), SB_NO_SUCH_SESSION);
    CHECK_ST(status_of("Svc", "nope", 20000), SB_NO_SUCH_METHOD);
    CHECK_ST(status_of("Svc", "hang", 100), SB_TIMEOUT);
    kept.reset();
    caller.call_sync("Svc", "nested", stagebus::ArgsRef(), std::chrono::milliseconds(20000));
    CHECK_ST(nested, SB_INVALID_STATE);
    OK("Client::call_sync throws the status; SB_INVALID_STATE inside a callback");

    int emits = 0;
    std::string final_kind;
    auto alive = std::make_shared<int>(0);
    std::weak_ptr<int> watch = alive;
    caller.call("Svc", "echo", a, [&, alive](const stagebus::Ctx &ctx) {
        if (ctx.rsp().is_final())
            final_kind = std::string(ctx.rsp().kind());
        else
            emits++;
    });
    alive.reset();
    RUN_UNTIL(loop.raw(), !final_kind.empty() && watch.expired());
    CHECK_STR(final_kind.c_str(), "return");
    CHECK(emits == 0);
    sb_status unknown = SB_OK;
    caller.call("Nobody", "echo", stagebus::ArgsRef(),
                [&](const stagebus::Ctx &ctx) { unknown = ctx.rsp().error(); });
    RUN_UNTIL(loop.raw(), unknown != SB_OK);
    CHECK_ST(unknown, SB_NO_SUCH_SESSION);
    OK("Client::call delivers the final response and destroys the handler after it");
}

// A host that watches the loop's fds one by one (Loop::watch_fds): a
// poll() over what it was told, dispatch_fd() for each ready fd and
// dispatch() on the timeout drive a publish and a call; an idle loop
// leaves every fd quiet; unwatch_fds() drops them all.
void fd_by_fd()
{
    stagebus::Loop loop;
    std::map<int, std::uint32_t> watched;
    loop.watch_fds([&](int fd, std::uint32_t events) {
        if (events == 0)
            watched.erase(fd);
        else
            watched[fd] = events;
    });
    CHECK(watched.size() == 2);
    stagebus::Broker broker(loop, {"tcp://127.0.0.1:0"});
    stagebus::Client service(loop, broker.address());
    stagebus::Client caller(loop, broker.address());
    stagebus::Stage stage(loop, "Svc");
    stage.on("echo", [](const stagebus::Ctx &ctx) { ctx.req().ret(ctx.args()); });

    // The fds ready within `ms`.
    auto ready = [&](int ms) {
        std::vector<pollfd> fds;
        for (auto [fd, events] : watched)
            fds.push_back({fd,
                           static_cast<short>(((events & SB_FD_READ) ? POLLIN : 0) |
                                              ((events & SB_FD_WRITE) ? POLLOUT : 0)),
                           0});
        std::vector<std::pair<int, std::uint32_t>> out;
        if (poll(fds.data(), fds.size(), ms) <= 0)
            return out;
        for (const pollfd &p : fds) {
            std::uint32_t e = ((p.revents & (POLLIN | POLLHUP | POLLERR)) ? SB_FD_READ : 0) |
                              ((p.revents & POLLOUT) ? SB_FD_WRITE : 0);
            if (e != 0)
                out.emplace_back(p.fd, e);
        }
        return out;
    };
    auto host_until = [&](const std::function<bool()> &done) {
        for (int turns = 0; !done(); turns++) {
            CHECK(turns < 100000);
            std::int64_t t = loop.timeout_ms();
            auto now = ready(t < 0 || t > 1000 ? 1000 : static_cast<int>(t));
            if (now.empty())
                loop.dispatch();
            for (auto [fd, events] : now)
                loop.dispatch_fd(fd, events);
        }
    };

    bool published = false;
    stage.publish(service, "Svc", {"echo"}, [&](sb_status st, std::string_view) {
        CHECK_ST(st, SB_OK);
        published = true;
    });
    host_until([&] { return published; });
    CHECK(watched.size() == 7);
    std::string answer;
    stagebus::Args a;
    a.set("text", "fd by fd");
    caller.call("Svc", "echo", a, [&](const stagebus::Ctx &ctx) {
        if (ctx.rsp().is_final())
            answer = ctx.args().get<std::string>("text");
    });
    host_until([&] { return !answer.empty(); });
    CHECK_STR(answer.c_str(), "fd by fd");
    host_until([&] { return ready(0).empty() && loop.timeout_ms() != 0; });
    OK("Loop::watch_fds and dispatch_fd drive a call; an idle loop leaves every fd quiet");

    loop.unwatch_fds();
    CHECK(watched.empty());
    try {
        loop.dispatch_fd(0, SB_FD_READ);
        FAILF("dispatch_fd without watch_fds did not throw");
    } catch (const stagebus::Error &e) {
        CHECK_ST(e.status(), SB_INVALID_STATE);
    }
    OK("Loop::unwatch_fds drops every fd; dispatch_fd then throws SB_INVALID_STATE");
}

// Signals and one-way requests (issue 14): Client::add_match with exact
// and wildcard patterns gets the matching signals in order;
// remove_match stops them; RemoteStage::post runs the callee, which
// sees Served::expects_answer false, and its answer is dropped.
void signals_and_posts()
{
    stagebus::Loop loop;
    stagebus::Broker broker(loop, {"tcp://127.0.0.1:0"});
    stagebus::Client service(loop, broker.address());
    stagebus::Client listener(loop, broker.address());
    stagebus::Stage stage(loop, "Src");
    int posted = 0;
    bool expected = true;
    stage.on("work", [&](const stagebus::Ctx &ctx) {
        posted++;
        expected = ctx.req().expects_answer();
        ctx.req().ret();
    });
    int published = 0;
    stage.publish(service, "Src", {"work"}, [&](sb_status st, std::string_view) {
        CHECK_ST(st, SB_OK);
        published++;
    });
    RUN_UNTIL(loop.raw(), published == 1);

    std::vector<std::string> exact, wild;
    int confirmed = 0;
    auto confirm = [&](sb_status st, std::string_view) {
        CHECK_ST(st, SB_OK);
        confirmed++;
    };
    const std::uint64_t m1 = listener.add_match(
        "Src", "tick",
        [&](std::string_view session, std::string_view signal, stagebus::ArgsRef args) {
            CHECK_STR(std::string(session).c_str(), "Src");
            exact.push_back(std::string(signal) + std::to_string(args.get<std::int64_t>("n")));
        },
        confirm);
    listener.add_match(
        "*", "*",
        [&](std::string_view, std::string_view signal, stagebus::ArgsRef args) {
            wild.push_back(std::string(signal) + std::to_string(args.get<std::int64_t>("n")));
        },
        confirm);
    RUN_UNTIL(loop.raw(), confirmed == 2);
    for (std::int64_t n = 0; n < 4; n++) {
        stagebus::Args a;
        a.set("n", n);
        service.emit_signal("Src", n % 2 == 0 ? "tick" : "tock", a);
    }
    RUN_UNTIL(loop.raw(), wild.size() == 4 && exact.size() == 2);
    CHECK_STR(exact[0].c_str(), "tick0");
    CHECK_STR(exact[1].c_str(), "tick2");
    CHECK_STR(wild[3].c_str(), "tock3");
    OK("Client::add_match: exact and wildcard matches get their signals in order");

    bool refused = false;
    try {
        listener.emit_signal("Src", "tick");
    } catch (const stagebus::Error &e) {
        refused = e.status() == SB_NOT_PUBLISHER;
    }
    CHECK(refused);
    int removed = 0;
    listener.remove_match(m1, [&](sb_status st, std::string_view) {
        CHECK_ST(st, SB_OK);
        removed++;
    });
    RUN_UNTIL(loop.raw(), removed == 1);
    service.emit_signal("Src", "tick", stagebus::Args().set("n", std::int64_t(9)));
    RUN_UNTIL(loop.raw(), wild.size() == 5);
    CHECK(exact.size() == 2);
    OK("only the publisher emits; a removed match gets nothing more");

    stagebus::RemoteStage remote;
    listener.subscribe("Src", [&](sb_status st, stagebus::RemoteStage r, std::string_view) {
        CHECK_ST(st, SB_OK);
        remote = std::move(r);
    });
    RUN_UNTIL(loop.raw(), bool(remote));
    remote.post("work");
    RUN_UNTIL(loop.raw(), posted == 1 && service.dropped_answers() == 1);
    CHECK(!expected);
    CHECK(broker.pending_calls() == 0);
    OK("RemoteStage::post: the callee expects no answer; it is dropped; no route stays");

    // Watches and name modes.
    std::vector<std::string> seen;
    int watched = 0;
    const std::uint64_t w = listener.watch(
        "Q*",
        [&](sb_name_event ev, std::string_view name, stagebus::ValueRef methods, sb_status reason,
            std::string_view) {
            std::string line = std::string(name) + ":" + std::to_string(int(ev));
            if (ev == SB_NAME_GONE)
                line += ":" + std::string(sb_strerror(reason));
            else
                line += ":" + std::to_string(methods.size());
            seen.push_back(line);
        },
        [&](sb_status st, std::string_view) {
            CHECK_ST(st, SB_OK);
            watched++;
        });
    RUN_UNTIL(loop.raw(), watched == 1);
    stagebus::Client owner(loop, broker.address());
    stagebus::Client standby(loop, broker.address());
    int queued = 0;
    auto queue_done = [&](sb_status st, std::string_view) {
        CHECK_ST(st, SB_OK);
        queued++;
    };
    stage.publish(owner, "Q", {"work"}, SB_NAME_QUEUE, queue_done);
    stage.publish(standby, "Q", {"work"}, SB_NAME_QUEUE, queue_done);
    RUN_UNTIL(loop.raw(), queued == 2);
    sb_status conflict = SB_OK;
    stage.publish(listener, "Q", {"work"}, SB_NAME_BALANCE,
                  [&](sb_status st, std::string_view) { conflict = st; });
    RUN_UNTIL(loop.raw(), conflict != SB_OK);
    CHECK_ST(conflict, SB_NAME_MODE_CONFLICT);
    owner.close();
    RUN_UNTIL(loop.raw(), seen.size() == 2);
    CHECK_STR(seen[0].c_str(), "Q:1:1");
    CHECK_STR(seen[1].c_str(), "Q:2:1");
    int unwatched = 0;
    listener.unwatch(w, [&](sb_status st, std::string_view) {
        CHECK_ST(st, SB_OK);
        unwatched++;
    });
    RUN_UNTIL(loop.raw(), unwatched == 1);
    OK("Client::watch sees the queue's owner change; another mode is SB_NAME_MODE_CONFLICT");
}

// Broker and client options; the caller identity a publisher sees; a
// publish the policy denies.
void identities()
{
    char dir[] = "/tmp/stagebus-cpp-XXXXXX";
    CHECK(mkdtemp(dir) != nullptr);
    std::string policy = std::string(dir) + "/policy";
    FILE *f = fopen(policy.c_str(), "w");
    CHECK(f != nullptr);
    fputs("allow token=ops own *\nallow anyone call *\n", f);
    fclose(f);
    stagebus::Loop loop;
    stagebus::Broker broker(loop, {"unix:" + std::string(dir) + "/bus.sock"},
                            stagebus::BrokerOptions()
                                .named_token("ops", "o")
                                .named_token("app", "a")
                                .socket_mode(0600)
                                .policy_file(policy.c_str()));
    stagebus::Client service(loop, broker.address(), stagebus::ClientOptions().token("o"));
    std::uint64_t caller_conn = 0;
    stagebus::Client caller(loop, broker.address(),
                            stagebus::ClientOptions().token("a").name("cpp caller"),
                            [&](sb_status st, std::uint64_t id, std::string_view) {
                                CHECK_ST(st, SB_OK);
                                caller_conn = id;
                            });
    stagebus::Stage stage(loop, "Who");
    std::optional<stagebus::Caller> who;
    stage.on("who", [&](const stagebus::Ctx &ctx) {
        who = ctx.req().caller();
        ctx.req().ret();
    });
    bool denied = false;
    stage.publish(caller, "Who", {"who"}, [&](sb_status st, std::string_view) {
        denied = st == SB_ACCESS_DENIED;
        CHECK_ST(st, SB_ACCESS_DENIED);
    });
    RUN_UNTIL(loop.raw(), denied);
    stage.publish(service, "Who", {"who"});
    stagebus::RemoteStage remote;
    caller.subscribe_waiting("Who", std::chrono::milliseconds(20000),
                             [&](sb_status st, stagebus::RemoteStage r, std::string_view) {
                                 CHECK_ST(st, SB_OK);
                                 remote = std::move(r);
                             });
    RUN_UNTIL(loop.raw(), bool(remote));
    int answers = 0;
    auto req = stagebus::RequestBuilder(remote, "who")
                   .fallback([&](const stagebus::Ctx &) { answers++; })
                   .send();
    RUN_UNTIL(loop.raw(), answers == 1);
    CHECK(broker.access_denied() == 1);
    CHECK(who.has_value());
    CHECK(who->uid == std::optional<std::uint32_t>(getuid()));
    CHECK(who->pid == std::optional<std::uint32_t>(getpid()));
    CHECK(who->identity == std::optional<std::string>("app"));
    CHECK(who->client_name == std::optional<std::string>("cpp caller"));
    CHECK(who->connection == caller_conn && caller_conn != 0);
    OK("BrokerOptions/ClientOptions; Served::caller() has uid, pid, identity and name");
    remove(policy.c_str());
}

// TLS with mutual authentication through the wrapper.
void tls()
{
    const char *env = getenv("STAGEBUS_TEST_TLS");
    CHECK(env != nullptr && *env != '\0');
    std::string dir(env);
    auto file = [&](const char *name) { return dir + "/" + name; };
    stagebus::Loop loop;
    stagebus::Broker broker(loop, {"tls://127.0.0.1:0"},
                            stagebus::BrokerOptions()
                                .tls_cert(file("broker.pem").c_str(), file("broker.key").c_str())
                                .tls_client_ca(file("ca.pem").c_str()));
    CHECK(broker.address().rfind("tls://127.0.0.1:", 0) == 0);
    auto options = [&] {
        stagebus::ClientOptions o;
        o.tls_ca(file("ca.pem").c_str())
            .tls_cert(file("alice.pem").c_str(), file("alice.key").c_str());
        return o;
    };
    stagebus::Client service(loop, broker.address(), options());
    stagebus::Client caller(loop, broker.address(), options());
    stagebus::Stage stage(loop, "Who");
    std::optional<stagebus::Caller> who;
    stage.on("who", [&](const stagebus::Ctx &ctx) {
        who = ctx.req().caller();
        ctx.req().ret();
    });
    stage.publish(service, "Who", {"who"});
    stagebus::RemoteStage remote;
    caller.subscribe_waiting("Who", std::chrono::milliseconds(20000),
                             [&](sb_status st, stagebus::RemoteStage r, std::string_view) {
                                 CHECK_ST(st, SB_OK);
                                 remote = std::move(r);
                             });
    RUN_UNTIL(loop.raw(), bool(remote));
    int answers = 0;
    auto req = stagebus::RequestBuilder(remote, "who")
                   .fallback([&](const stagebus::Ctx &) { answers++; })
                   .send();
    RUN_UNTIL(loop.raw(), answers == 1);
    CHECK(who.has_value());
    CHECK(who->identity == std::optional<std::string>("CN=alice"));
    bool refused = false;
    stagebus::Client stranger(loop, broker.address(),
                              stagebus::ClientOptions().tls_ca(file("ca.pem").c_str()),
                              [&](sb_status st, std::uint64_t, std::string_view message) {
                                  CHECK(st != SB_OK);
                                  CHECK(message.find("certificate") != std::string_view::npos);
                                  refused = true;
                              });
    RUN_UNTIL(loop.raw(), refused && broker.tls_handshake_failures() >= 1);
    OK("TLS options: a call through tls:// with identity CN=alice; no certificate, refused");
}

// Federation options: a bad broker id, a missing NKey seed file and a
// heartbeat timeout no longer than its interval throw;
// a federated broker serves
// its own clients while NATS is unreachable.
void federation_options()
{
    bool threw = false;
    try {
        stagebus::BrokerOptions().federation("nats://127.0.0.1:1", "bad id");
    } catch (const stagebus::Error &e) {
        threw = e.status() == SB_INVALID_ARGUMENT;
    }
    CHECK(threw);
    threw = false;
    try {
        stagebus::BrokerOptions()
            .federation("nats://127.0.0.1:1", "b1")
            .nats_nkey("/nonexistent/fed.nk");
    } catch (const stagebus::Error &e) {
        threw = e.status() == SB_INVALID_ARGUMENT &&
                std::string_view(e.what()).find("fed.nk") != std::string_view::npos;
    }
    CHECK(threw);
    threw = false;
    try {
        stagebus::BrokerOptions().federation("nats://127.0.0.1:1", "b1").nats_tls(nullptr, "c.pem");
    } catch (const stagebus::Error &e) {
        threw = e.status() == SB_INVALID_ARGUMENT;
    }
    CHECK(threw);
    threw = false;
    try {
        stagebus::BrokerOptions()
            .federation("nats://127.0.0.1:1", "b1")
            .federation_heartbeat(std::chrono::milliseconds(500), std::chrono::milliseconds(500));
    } catch (const stagebus::Error &e) {
        threw = e.status() == SB_INVALID_ARGUMENT &&
                std::string_view(e.what()).find("hb_timeout") != std::string_view::npos;
    }
    CHECK(threw);
    stagebus::Loop loop;
    stagebus::Broker broker(loop, {"tcp://127.0.0.1:0"},
                            stagebus::BrokerOptions()
                                .federation("nats://127.0.0.1:1", "b1", "cpp_test")
                                .federation_heartbeat(std::chrono::milliseconds(200),
                                                      std::chrono::seconds(3))
                                .federation_sys_events()
                                .nats_credentials(nullptr, nullptr, "t"));
    stagebus::Client client(loop, broker.address());
    OK("BrokerOptions::federation; a federated broker starts without NATS");
}

// Unix signals on the loop (Loop::on_unix_signals): one raised in this
// thread runs the function on the loop, which stops it; a bad list
// throws; clear_unix_signals() gives the signal its default again.
void unix_signals()
{
    stagebus::Loop loop;
    std::vector<int> seen;
    loop.on_unix_signals({SIGUSR1}, [&](int signal) {
        seen.push_back(signal);
        loop.stop();
    });
    CHECK(raise(SIGUSR1) == 0);
    loop.run();
    CHECK(seen.size() == 1 && seen[0] == SIGUSR1);
    bool threw = false;
    try {
        loop.on_unix_signals({SIGKILL}, [](int) {});
    } catch (const stagebus::Error &e) {
        threw = e.status() == SB_INVALID_ARGUMENT;
    }
    CHECK(threw);
    loop.clear_unix_signals();
    sigset_t now;
    CHECK(pthread_sigmask(SIG_BLOCK, nullptr, &now) == 0);
    CHECK(!sigismember(&now, SIGUSR1));
}
} // namespace

int main()
{
    test_begin(__FILE__);
    unknown_messages();
    strings_and_names();
    waiting_for_a_name();
    deadlines();
    logging();
    reconnect();
    calls_by_name();
    fd_by_fd();
    unix_signals();
    signals_and_posts();
    identities();
    tls();
    federation_options();
    return test_end();
}
