// dialogue.cpp: a broker, a service and a caller in one process, through
// the C++ wrapper (bindings/cpp/stagebus.hpp).
//
// The service publishes "Greeter" (hello, ask + its recall answer, slow,
// strict); the caller subscribes through the broker and goes through:
//
//   hello   request / return
//   ask     request / emit "question" / recall "answer" / return
//   slow    request, cancelled after 50 ms: the service's on_cancel runs
//   nosuch  an error response: no_such_method
//   strict  the handler throws stagebus::Error: the caller gets its code
//           and text as an error response
//
// Exits 0 when all of it happened as expected.
//
//   c++ -std=c++17 -I include -I bindings/cpp dialogue.cpp -lstagebus
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "stagebus.hpp"

namespace sb = stagebus;

namespace {

template <class... A> void say(const char *fmt, A... args) {
    std::printf(fmt, args...);
    std::printf("\n");
    std::fflush(stdout);
}

// The caller's side: a list of steps, each started once the previous one
// has passed.
struct Caller {
    sb::Loop &loop;
    sb::RemoteStage greeter;
    sb::Request req; // the current step's request
    std::vector<std::function<void()>> steps;
    std::size_t next = 0;
    int passed = 0;
    int exit_code = -1;
    bool slow_cancelled_on_service = false;

    void finish(int code) {
        if (exit_code < 0) {
            exit_code = code;
        }
        loop.stop();
    }

    void fail(const std::string &why) {
        say("FAILED in step %zu: %s", next, why.c_str());
        finish(1);
    }

    // Starts the next step from a timer, not from inside the handler
    // that ended the previous one.
    void step_passed() {
        passed++;
        loop.add_timer(0, [this] { start_next(); });
    }

    void start_next() {
        if (exit_code >= 0) {
            return;
        }
        if (next == steps.size()) {
            say("dialogue: %d of %zu steps passed", passed, steps.size());
            finish(passed == static_cast<int>(steps.size()) ? 0 : 1);
            return;
        }
        steps[next++]();
    }

    // Any response a step does not expect fails it.
    sb::Handler unexpected() {
        return [this](sb::Ctx &ctx) {
            sb::Response rsp = ctx.rsp();
            fail("unexpected '" + std::string(rsp.kind()) + "' response (" +
                 sb::strerror(rsp.error()) + ": " + std::string(rsp.message()) + ")");
        };
    }
};

} // namespace

int main() {
    try {
        sb::Loop loop;
        sb::Broker broker(loop, {"tcp://127.0.0.1:0"});
        const std::string address = broker.address();
        say("broker listening on %s", address.c_str());

        Caller caller{loop, {}, {}, {}, 0, 0, -1, false};

        // --- the service ----------------------------------------------------
        sb::Client service_client(loop, address, [&](sb_status st, std::uint64_t, std::string_view m) {
            if (st != SB_OK) {
                caller.fail("service connect: " + std::string(m));
            }
        });
        sb::Stage greeter(loop, "Greeter");
        greeter
            .on("hello",
                [](sb::Ctx &ctx) {
                    auto name = ctx.args().get_or<std::string>("name", "world");
                    ctx.req().ret(sb::Args().set("greeting", "Hello, " + name + "!"));
                })
            .on("ask",
                [](sb::Ctx &ctx) {
                    ctx.req().emit("question", sb::Args().set("question", "What is your name?"));
                })
            .on("answer",
                [](sb::Ctx &ctx) {
                    // A recall: the same request as `ask`.
                    auto name = ctx.args().get<std::string>("name");
                    ctx.req().ret(sb::Args().set("reply", "Nice to meet you, " + name + "."));
                })
            .on("slow",
                [&](sb::Ctx &ctx) {
                    std::uint64_t id = ctx.req().id();
                    say("service: slow holds request %llu", static_cast<unsigned long long>(id));
                    // Kept: a request its handler neither answers nor keeps
                    // ends at once with SB_UNANSWERED. The on-cancel callback
                    // owns the reference; it goes when the request ends.
                    auto kept = std::make_shared<sb::ServedRef>(ctx.req().ref());
                    ctx.req().on_cancel([&caller, id, kept] {
                        say("service: on_cancel ran for request %llu",
                            static_cast<unsigned long long>(id));
                        caller.slow_cancelled_on_service = true;
                    });
                })
            .on("strict", [](sb::Ctx &ctx) {
                if (!ctx.args().has("n")) {
                    // Ends the request with this code and text.
                    throw sb::Error(SB_INVALID_ARGUMENT, "strict needs an integer 'n'");
                }
                ctx.req().ret(sb::Args().set("n", ctx.args().get<std::int64_t>("n")));
            });

        // --- the caller's steps ---------------------------------------------
        sb::Client caller_client(loop, address);

        caller.steps.push_back([&] { // hello
            caller.req = sb::Request::to(caller.greeter, "hello")
                             .args(sb::Args().set("name", "C++"))
                             .on("return",
                                 [&](sb::Ctx &ctx) {
                                     auto greeting = ctx.args().get<std::string>("greeting");
                                     say("hello <- return greeting=\"%s\"", greeting.c_str());
                                     // Reading what is not there throws.
                                     try {
                                         ctx.args().get<std::int64_t>("missing");
                                         caller.fail("get of a missing key did not throw");
                                         return;
                                     } catch (const sb::Error &e) {
                                         say("hello: get(\"missing\") threw %s",
                                             sb::strerror(e.status()));
                                         if (e.status() != SB_NOT_FOUND) {
                                             caller.fail("wrong status for a missing key");
                                             return;
                                         }
                                     }
                                     if (greeting != "Hello, C++!") {
                                         caller.fail("wrong greeting");
                                         return;
                                     }
                                     caller.step_passed();
                                 })
                             .fallback(caller.unexpected())
                             .timeout_ms(5000)
                             .send();
            say("hello -> request %llu", static_cast<unsigned long long>(caller.req.id()));
        });

        caller.steps.push_back([&] { // ask
            caller.req =
                sb::Request::to(caller.greeter, "ask")
                    .on("question",
                        [&](sb::Ctx &ctx) {
                            auto q = ctx.args().get<std::string_view>("question");
                            say("ask <- emit question=\"%.*s\"", static_cast<int>(q.size()),
                                q.data());
                            ctx.rsp().recall("answer", sb::Args().set("name", "C++"));
                            say("ask -> recall answer name=\"C++\"");
                        })
                    .on("return",
                        [&](sb::Ctx &ctx) {
                            auto reply = ctx.args().get<std::string>("reply");
                            say("ask <- return reply=\"%s\"", reply.c_str());
                            if (reply != "Nice to meet you, C++.") {
                                caller.fail("wrong reply");
                                return;
                            }
                            caller.step_passed();
                        })
                    .fallback(caller.unexpected())
                    .timeout_ms(5000)
                    .send();
            say("ask -> request %llu", static_cast<unsigned long long>(caller.req.id()));
        });

        caller.steps.push_back([&] { // slow
            caller.req = sb::Request::to(caller.greeter, "slow").fallback(caller.unexpected()).send();
            say("slow -> request %llu", static_cast<unsigned long long>(caller.req.id()));
            loop.add_timer(50, [&] {
                bool was_open = caller.req.cancel();
                say("slow -> cancel after 50 ms (the request was %s)", was_open ? "open" : "closed");
                if (!was_open) {
                    caller.fail("the slow request ended before the cancel");
                    return;
                }
                // The cancel travels through the broker; look again soon.
                loop.add_timer(100, [&] {
                    if (!caller.slow_cancelled_on_service) {
                        caller.fail("the service's on_cancel did not run");
                        return;
                    }
                    say("slow: cancelled on both sides, no response");
                    caller.step_passed();
                });
            });
        });

        caller.steps.push_back([&] { // nosuch
            caller.req = sb::Request::to(caller.greeter, "nosuch")
                             .on("error",
                                 [&](sb::Ctx &ctx) {
                                     sb::Response rsp = ctx.rsp();
                                     say("nosuch <- error %s: %.*s", sb::strerror(rsp.error()),
                                         static_cast<int>(rsp.message().size()),
                                         rsp.message().data());
                                     if (rsp.error() != SB_NO_SUCH_METHOD || !rsp.is_final()) {
                                         caller.fail("expected a final no_such_method error");
                                         return;
                                     }
                                     caller.step_passed();
                                 })
                             .fallback(caller.unexpected())
                             .timeout_ms(5000)
                             .send();
            say("nosuch -> request %llu", static_cast<unsigned long long>(caller.req.id()));
        });

        caller.steps.push_back([&] { // strict
            caller.req = sb::Request::to(caller.greeter, "strict")
                             .on("error",
                                 [&](sb::Ctx &ctx) {
                                     sb::Response rsp = ctx.rsp();
                                     say("strict <- error %s: %.*s", sb::strerror(rsp.error()),
                                         static_cast<int>(rsp.message().size()),
                                         rsp.message().data());
                                     if (rsp.error() != SB_INVALID_ARGUMENT ||
                                         rsp.message() != "strict needs an integer 'n'") {
                                         caller.fail("expected the handler's own error");
                                         return;
                                     }
                                     caller.step_passed();
                                 })
                             .fallback(caller.unexpected())
                             .timeout_ms(5000)
                             .send();
            say("strict -> request %llu", static_cast<unsigned long long>(caller.req.id()));
        });

        // --- go -----------------------------------------------------------------
        greeter.set_kind("answer", SB_HANDLER_RECALL_ONLY); // reached by recall only
        greeter.publish(service_client, "Greeter", {"hello", "ask", "slow", "strict"},
                        [&](sb_status st, std::string_view m) {
                            if (st != SB_OK) {
                                caller.fail("publish: " + std::string(m));
                                return;
                            }
                            say("service: Greeter published");
                            caller_client.subscribe(
                                "Greeter",
                                [&](sb_status sub, sb::RemoteStage remote, std::string_view why) {
                                    if (sub != SB_OK) {
                                        caller.fail("subscribe: " + std::string(why));
                                        return;
                                    }
                                    say("caller: subscribed to Greeter");
                                    caller.greeter = std::move(remote);
                                    caller.start_next();
                                });
                        });
        loop.add_timer(10000, [&] {
            say("dialogue: timed out");
            caller.finish(3);
        });

        loop.run();
        return caller.exit_code < 0 ? 1 : caller.exit_code;
    } catch (const sb::Error &e) {
        std::fprintf(stderr, "dialogue: %s\n", e.what());
        return 1;
    }
}
