#!/usr/bin/perl
# POEx::ProxySession's t/01-basic.t (SEMANTICS.md 1.11) on stagebus
# under POE: a broker (Server), one client (Client) used by both the
# publisher Foo and the driver Tester, publish, subscribe, listing, three
# proxied calls in order, rescind from inside yar, unsubscribe.
#
# 18 of the original's 23 checks. Every check asserts something the
# library produced. The original's tags are, here, values the test's own
# closures capture, so a tag compared with itself could not fail: where
# the completion carries an outcome of its own, the tag check asserts
# that outcome instead (the listed session's methods; a rescind or an
# unsubscribe that completed leaves nothing to rescind or unsubscribe, so
# doing it again is refused at once). Removed, because nothing here can
# observe them (the original's numbers):
#  * 4 (connect tag): the connect completion carries only a connection
#    id, and the binding has no accessor that would tie an id to its
#    client (tests/proxysession.rs p01 and p30 check that in Rust).
#  * 7 (Foo::setup called) and 10 (Tester::continue called): POE posts
#    between the test's own sessions, no stagebus code.
#  * 9 (publish tag): the publish completion carries only its status;
#    what the publish did is what later checks observe (the listing
#    holds FooSession with foo, bar, yar; those methods run).
#  * 12 (subscribe tag): the remote stage's session name is the binding
#    echoing the name it was given; the subscription's own outcome is
#    that its requests reach Foo and that the rescind reaches it.
# The final check asserts that, everything freed, every callback
# registration was released, not merely that the loop returned.
#
# Port differences, each checked:
#  * checks 5-6 (unknown message): the original pushed a fake message
#    {type: unknown, id: -1, payload: 'test_unknown'} straight into the
#    Client's inbound handler. A binding cannot reach inside the client,
#    so Tester sends that message to the broker with send_custom (kind
#    'unknown', id 2**64-1 for -1, payload 'test_unknown'); the broker
#    knows no such type and answers with a protocol error, which reaches
#    the Client's unknown-message handler (Tester::unknown_event) as
#    kind 'result' with the same id and the broker's text naming type
#    'unknown'. unknown_event posts Foo's setup.
#  * proxied calls carry return values; both sides see them in order.
#  * the rescind in yar tells the subscriber (session gone) and ends
#    its subscription, so Tester's unsubscribe of it is refused
#    (not_subscribed, part of check 15); the unsubscribe (checks 16-17)
#    is shown on a fresh publication of FooSession.
use strict;
use warnings;

use Test::More tests => 18;
use Scalar::Util qw(blessed);

BEGIN { use_ok('StageBus') }          # 1
BEGIN { use_ok('StageBus::POE') }     # 2

use POE;

alarm 60;    # a hard bound: SIGALRM ends the process

my $records0 = StageBus::_live_records();

my $loop   = StageBus::Loop->new;
my $host   = StageBus::POE->new(loop => $loop, alias => 'stagebus');
my $server = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
my $client;                  # "Client"
my @ran;                     # the methods Foo ran, in order
my @returned;                # the answers Tester got, in order
my @gone;                    # sessions the client was told are gone
my $UNKNOWN_ID = 18446744073709551615;   # the original's id -1, as a u64

sub shutdown_all {
    $host->shutdown;
    $poe_kernel->alarm_remove_all;
}

# ---- Foo: the publisher ------------------------------------------------

my $foo_stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Foo',
    handlers => {
        foo => sub {
            my ($ctx) = @_;
            push @ran, 'foo';
            ok("@ran" eq 'foo' && $ctx->args->{arg} eq 'string', 'Foo::foo(Str) ran once, first');  # 10
            $ctx->req->return(args => { method => 'foo', got => $ctx->args->{arg} });
        },
        bar => sub {
            my ($ctx) = @_;
            push @ran, 'bar';
            ok("@ran" eq 'foo bar' && $ctx->args->{arg} == 1, 'Foo::bar(Int) ran once, second');     # 11
            $ctx->req->return(args => { method => 'bar', got => $ctx->args->{arg} });
        },
        yar => sub {
            my ($ctx) = @_;
            push @ran, 'yar';
            my $b = $ctx->args->{arg};
            ok("@ran" eq 'foo bar yar' && defined $b && !$b, 'Foo::yar(Bool) ran once, third');      # 12
            $ctx->req->return(args => { method => 'yar', got => $ctx->args->{arg} });
            $poe_kernel->post(foo => 'yar_called');
        },
    },
);

POE::Session->create(
    inline_states => {
        _start => sub { $_[KERNEL]->alias_set('foo') },
        setup  => sub {
            my ($kernel, $connection_id) = @_[KERNEL, ARG0];
            $foo_stage->publish(
                client  => $client,
                session => 'FooSession',
                methods => [qw(foo bar yar)],
                on_done => sub { $kernel->post(foo => handle_publish => $_[0]) },
            );
        },
        handle_publish => sub {
            my ($err) = $_[ARG0];
            BAIL_OUT("publish failed: $err") if $err;
            ok(!$err, 'publish succeeded');                                     # 6
            $_[KERNEL]->post(Tester => 'continue');
        },
        yar_called => sub {
            my $kernel = $_[KERNEL];
            # Foo::yar rescinds FooSession.
            $client->rescind(session => 'FooSession',
                on_done => sub { $kernel->post(foo => handle_rescind => $_[0]) });
        },
        handle_rescind => sub {
            my ($kernel, $err) = @_[KERNEL, ARG0];
            ok(!$err, 'rescind succeeded') or diag("rescind: $err");            # 13
            # Its outcome: the client no longer publishes FooSession.
            my $again = !eval { $client->rescind(session => 'FooSession',
                    on_done => sub { fail('second rescind done') }); 1 }
                && blessed($@) && $@->is('not_publisher');
            ok($again, 'the rescind withdrew FooSession: rescinding again is refused (not_publisher)')  # 14
                or diag("second rescind: " . ($@ || 'accepted'));
            $kernel->post(Tester => 'finish');
        },
        shutdown => sub { $_[KERNEL]->alias_remove('foo') },
        republish => sub {
            my $kernel = $_[KERNEL];
            $foo_stage->publish(client => $client, session => 'FooSession',
                on_done => sub { $kernel->post(Tester => republished => $_[0]) });
        },
    },
);

# ---- Tester: the driver -------------------------------------------------

POE::Session->create(
    inline_states => {
        _start => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            $kernel->alias_set('Tester');
            $kernel->delay(timeout => 30);
            $client = StageBus::Client->new(
                loop            => $loop,
                address         => $server->address,
                on_connect      => sub { $kernel->post(Tester => post_connect => @_) },
                on_session_gone => sub { push @gone, $_[0] },
                on_unknown_message => sub { $kernel->post(Tester => unknown_event => @_) },
            );
        },
        timeout => sub {
            fail('the dialogue finished in time');
            diag("ran: @ran; returned: @returned");
            shutdown_all();
        },
        post_connect => sub {
            my ($kernel, $heap, $err, $connection_id) = @_[KERNEL, HEAP, ARG0, ARG1];
            ok(!$err && $connection_id, 'post_connect called with a connection id')   # 3
                or diag("connect: " . ($err // 'no id'));
            $heap->{connection_id} = $connection_id;
            $client->send_custom(kind => 'unknown', id => $UNKNOWN_ID, payload => 'test_unknown');
        },
        unknown_event => sub {
            my ($kernel, $heap, $kind, $id, $payload) = @_[KERNEL, HEAP, ARG0 .. ARG2];
            ok($kind eq 'result' && $id == $UNKNOWN_ID,
                'unknown_event called with the answer to the id sent')         # 4
                or diag("kind '$kind', id $id");
            is($payload, "protocol: Unknown message type 'unknown'",
                "the answer names message type 'unknown'");                     # 5
            $kernel->post(foo => setup => $heap->{connection_id});
        },
        continue => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            $client->subscribe(session => 'FooSession',
                on_subscribed => sub { $kernel->post(Tester => post_subscription => @_) });
        },
        post_subscription => sub {
            my ($kernel, $heap, $err, $remote) = @_[KERNEL, HEAP, ARG0, ARG1];
            ok(!$err && blessed($remote) && $remote->isa('StageBus::Remote'), 'subscribe succeeded')  # 7
                or diag("subscribe: $err");
            $heap->{remote} = $remote;
            $client->listing(on_listing => sub { $kernel->post(Tester => post_listing => @_) });
        },
        post_listing => sub {
            my ($kernel, $heap, $err, $sessions) = @_[KERNEL, HEAP, ARG0, ARG1];
            ok(!$err && @$sessions == 1 && $sessions->[0]{name} eq 'FooSession',
                'the listing holds exactly FooSession');                        # 8
            is(!$err && "@{ $sessions->[0]{methods} || [] }", 'foo bar yar',
                'the listed session carries its methods');                      # 9
            my $remote = $heap->{remote};
            my $returned = sub { my ($ctx) = @_; push @returned, $ctx->args->{method} };
            $heap->{calls} = [
                $remote->request(method => 'foo', args => { arg => 'string' },        on_return => $returned),
                $remote->request(method => 'bar', args => { arg => 1 },               on_return => $returned),
                $remote->request(method => 'yar', args => { arg => StageBus::FALSE }, on_return => $returned),
            ];
        },
        finish => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            # Wait (bounded by the timeout) for the answers and the notice.
            if (@returned < 3 || !@gone) {
                $kernel->delay(finish => 0.005);
                return;
            }
            my $refused = !eval { $heap->{remote}->unsubscribe(on_done => sub { fail('unsubscribe done') }); 1 }
                && blessed($@) && $@->is('not_subscribed');
            ok(  "@returned" eq 'foo bar yar'
                && "@gone" eq 'FooSession'
                && $refused,
                'Tester::finish: answers in order, the rescind ended the subscription');  # 15
            delete $heap->{remote};
            delete $heap->{calls};
            $kernel->post(foo => 'republish');
        },
        republished => sub {
            my ($kernel, $heap, $err) = @_[KERNEL, HEAP, ARG0];
            BAIL_OUT("publish again: $err") if $err;
            $client->subscribe(session => 'FooSession', on_subscribed => sub {
                my ($err, $remote) = @_;
                $heap->{remote} = $remote;
                $remote->unsubscribe(on_done => sub { $kernel->post(Tester => done => $_[0]) });
            });
        },
        done => sub {
            my ($kernel, $heap, $err) = @_[KERNEL, HEAP, ARG0];
            ok(!$err, 'done (unsubscribe) called with success');                # 16
            # Its outcome: the remote stage is no longer subscribed.
            my $again = !eval { $heap->{remote}->unsubscribe(on_done => sub { fail('second unsubscribe done') }); 1 }
                && blessed($@) && $@->is('not_subscribed');
            ok($again, 'the unsubscribe ended the subscription: unsubscribing again is refused (not_subscribed)')  # 17
                or diag("second unsubscribe: " . ($@ || 'accepted'));
            delete $heap->{remote};
            $client->rescind(session => 'FooSession', on_done => sub { $kernel->post(Tester => 'shutdown') });
        },
        shutdown => sub {
            $_[KERNEL]->delay('timeout');
            $_[KERNEL]->alias_remove('Tester');
            $_[KERNEL]->call(foo => 'shutdown');
            shutdown_all();
        },
    },
);

POE::Kernel->run;
undef $client;
undef $server;
undef $foo_stage;
undef $host;
undef $loop;
is(StageBus::_live_records(), $records0,
    'the event loop ended and every callback registration was released');      # 18
