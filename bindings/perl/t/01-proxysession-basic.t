#!/usr/bin/perl
# POEx::ProxySession's t/01-basic.t (SEMANTICS.md 1.11), its 23 checks,
# on stagebus under POE: a broker (Server), one client (Client) used by
# both the publisher Foo and the driver Tester, publish with a tag,
# subscribe, listing, three proxied calls in order, rescind from inside
# yar, unsubscribe. Tags are what closures capture.
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
#    'unknown'. unknown_event posts Foo's setup, so the checks keep the
#    original's numbering.
#  * proxied calls carry return values; both sides see them in order.
#  * the rescind in yar tells the subscriber (session gone) and ends
#    its subscription, so Tester's unsubscribe of it is refused
#    (not_subscribed, part of check 20); the unsubscribe with a tag
#    (checks 21-22) is shown on a fresh publication of FooSession.
use strict;
use warnings;

use Test::More tests => 23;
use Scalar::Util qw(blessed);

BEGIN { use_ok('StageBus') }          # 1
BEGIN { use_ok('StageBus::POE') }     # 2

use POE;

alarm 60;    # a hard bound: SIGALRM ends the process

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
            ok("@ran" eq 'foo' && $ctx->args->{arg} eq 'string', 'Foo::foo(Str) ran once, first');  # 15
            $ctx->req->return(args => { method => 'foo', got => $ctx->args->{arg} });
        },
        bar => sub {
            my ($ctx) = @_;
            push @ran, 'bar';
            ok("@ran" eq 'foo bar' && $ctx->args->{arg} == 1, 'Foo::bar(Int) ran once, second');     # 16
            $ctx->req->return(args => { method => 'bar', got => $ctx->args->{arg} });
        },
        yar => sub {
            my ($ctx) = @_;
            push @ran, 'yar';
            my $b = $ctx->args->{arg};
            ok("@ran" eq 'foo bar yar' && defined $b && !$b, 'Foo::yar(Bool) ran once, third');      # 17
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
            pass('Foo::setup called');                                          # 7
            my $tag = \'my_tag';
            $foo_stage->publish(
                client  => $client,
                session => 'FooSession',
                methods => [qw(foo bar yar)],
                on_done => sub { $kernel->post(foo => handle_publish => $_[0], $tag) },
            );
        },
        handle_publish => sub {
            my ($err, $tag) = @_[ARG0, ARG1];
            BAIL_OUT("publish failed: $err") if $err;
            ok(!$err, 'publish succeeded');                                     # 8
            is($$tag, 'my_tag', 'publish tag round-trips');                     # 9
            $_[KERNEL]->post(Tester => 'continue');
        },
        yar_called => sub {
            my $kernel = $_[KERNEL];
            # Foo::yar rescinds FooSession.
            my $tag = \'tag_two';
            $client->rescind(session => 'FooSession',
                on_done => sub { $kernel->post(foo => handle_rescind => $_[0], $tag) });
        },
        handle_rescind => sub {
            my ($kernel, $err, $tag) = @_[KERNEL, ARG0, ARG1];
            ok(!$err, 'rescind succeeded') or diag("rescind: $err");            # 18
            is($$tag, 'tag_two', 'rescind tag round-trips');                    # 19
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
            my $tag = \'connect_tag';
            $client = StageBus::Client->new(
                loop            => $loop,
                address         => $server->address,
                on_connect      => sub { $kernel->post(Tester => post_connect => @_, $tag) },
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
            my ($kernel, $heap, $err, $connection_id, $tag) = @_[KERNEL, HEAP, ARG0 .. ARG2];
            ok(!$err && $connection_id, 'post_connect called with a connection id')   # 3
                or diag("connect: " . ($err // 'no id'));
            is($$tag, 'connect_tag', 'connect tag round-trips');                # 4
            $heap->{connection_id} = $connection_id;
            $client->send_custom(kind => 'unknown', id => $UNKNOWN_ID, payload => 'test_unknown');
        },
        unknown_event => sub {
            my ($kernel, $heap, $kind, $id, $payload) = @_[KERNEL, HEAP, ARG0 .. ARG2];
            pass('unknown_event called');                                       # 5
            ok($kind eq 'result' && $id == $UNKNOWN_ID
                && $payload eq "protocol: Unknown message type 'unknown'",
                "the answer to message type 'unknown' came back with its id")   # 6
                or diag("kind '$kind', id $id, payload '$payload'");
            $kernel->post(foo => setup => $heap->{connection_id});
        },
        continue => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            pass('Tester::continue called');                                    # 10
            my $tag = \'tag_three';
            $client->subscribe(session => 'FooSession',
                on_subscribed => sub { $kernel->post(Tester => post_subscription => @_, $tag) });
        },
        post_subscription => sub {
            my ($kernel, $heap, $err, $remote, $tag) = @_[KERNEL, HEAP, ARG0 .. ARG2];
            ok(!$err && blessed($remote) && $remote->isa('StageBus::Remote'), 'subscribe succeeded')  # 11
                or diag("subscribe: $err");
            is($$tag, 'tag_three', 'subscribe tag round-trips');                # 12
            $heap->{remote} = $remote;
            my $tag4 = \'tag_four';
            $client->listing(on_listing => sub { $kernel->post(Tester => post_listing => @_, $tag4) });
        },
        post_listing => sub {
            my ($kernel, $heap, $err, $sessions, $tag) = @_[KERNEL, HEAP, ARG0 .. ARG2];
            ok(!$err && @$sessions == 1 && $sessions->[0]{name} eq 'FooSession',
                'the listing holds exactly FooSession');                        # 13
            is($$tag, 'tag_four', 'listing tag round-trips');                   # 14
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
                'Tester::finish: answers in order, the rescind ended the subscription');  # 20
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
                my $tag = \'tag6';
                $remote->unsubscribe(on_done => sub { $kernel->post(Tester => done => $_[0], $tag) });
            });
        },
        done => sub {
            my ($kernel, $heap, $err, $tag) = @_[KERNEL, HEAP, ARG0, ARG1];
            ok(!$err, 'done (unsubscribe) called with success');                # 21
            is($$tag, 'tag6', 'unsubscribe tag round-trips');                   # 22
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
pass('the event loop ended');                                                   # 23
