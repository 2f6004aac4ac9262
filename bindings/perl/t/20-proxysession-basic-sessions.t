#!/usr/bin/perl
# POEx::ProxySession's t/01-basic.t (SEMANTICS.md 1.11), in its own
# style, on the POE layer: Foo is an ordinary POE session published with
# StageBus::POE::Publish, Tester posts foo('string'), bar(1), yar(0) to
# the proxy session 'FooSession' made by StageBus::POE::Proxy, and every
# completion is an event of the session that asked, with its tag.
#
# The original's 23 checks, in its order. Where the original checked a
# tag the test's own code passed around, the tag here travels through
# the layer (publish, subscribe, rescind, unsubscribe carry it back);
# connect and listing are closures of StageBus::Client that post to
# Tester, so their checks assert what the library answered. Differences:
#  * the unknown message (5-6) is sent to the broker (send_custom); its
#    answer reaches the client's unknown-message handler (no binding can
#    push a message into the client's inbound handler);
#  * proxied calls are not fire-and-forget: Tester names a
#    response_event and gets each return (checked in 20);
#  * the rescind in yar makes the proxy go away (the original's stayed):
#    Tester is told by its gone_event, and its unsubscribe completes at
#    once with success, as the original's "already gone" path did.
use strict;
use warnings;

use Test::More tests => 23;

BEGIN { use_ok('StageBus') }                    # 1
BEGIN { use_ok('StageBus::POE') }               # 2
use StageBus::POE::Proxy;
use StageBus::POE::Publish;
use POE;

alarm 60;

my $loop   = StageBus::Loop->new;
my $host   = StageBus::POE->new(loop => $loop, alias => 'stagebus');
my $server = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
my $client;
my (@ran, @answers, @gone);

# ---- Foo: an ordinary POE session --------------------------------------

POE::Session->create(
    inline_states => {
        _start => sub { $_[KERNEL]->alias_set('foo') },
        setup  => sub {
            my ($kernel, $heap, $connection_id) = @_[KERNEL, HEAP, ARG0];
            pass('Foo::setup called');                                          # 7
            $heap->{publication} = StageBus::POE::Publish->new(
                client       => $client,
                name         => 'FooSession',
                events       => [qw(foo bar yar)],
                return_event => 'handle_publish',
                tag          => \'my_tag',
            );
        },
        handle_publish => sub {
            my ($kernel, $r) = @_[KERNEL, ARG0];
            BAIL_OUT("publish failed: $r->{error}") unless $r->{success};
            ok($r->{success} && $r->{session_name} eq 'FooSession', 'handle_publish: success');   # 8
            is(${ $r->{tag} }, 'my_tag', 'handle_publish: tag');                # 9
            $kernel->post(Tester => 'continue');
        },
        foo => sub { push @ran, ['foo', $_[ARG0]]; return "foo $_[ARG0]" },
        bar => sub { push @ran, ['bar', $_[ARG0]]; return "bar $_[ARG0]" },
        yar => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            push @ran, ['yar', $_[ARG0]];
            is_deeply([map { $_->[0] } @ran], [qw(foo bar yar)], 'Foo::foo, Foo::bar, Foo::yar ran once each, in order');  # 15
            is_deeply([map { $_->[1] } @ran], ['string', 1, 0], 'with the args posted');  # 16
            is($_[SESSION]->ID, $kernel->alias_resolve('foo')->ID, 'inside the Foo session');  # 17
            $heap->{publication}->rescind(return_event => 'handle_rescind', tag => \'tag_two');
            return "yar $_[ARG0]";
        },
        handle_rescind => sub {
            my ($kernel, $r) = @_[KERNEL, ARG0];
            ok($r->{success} && $r->{session_name} eq 'FooSession', 'handle_rescind: success');  # 18
            is(${ $r->{tag} }, 'tag_two', 'handle_rescind: tag');                 # 19
            $kernel->post(Tester => 'finish');
            $kernel->alias_remove('foo');
        },
    },
);

# ---- Tester ---------------------------------------------------------------

POE::Session->create(
    inline_states => {
        _start => sub {
            my $kernel = $_[KERNEL];
            $kernel->alias_set('Tester');
            $kernel->delay(timeout => 30);
            $client = StageBus::Client->new(
                loop               => $loop,
                address            => $server->address,
                on_connect         => sub { $kernel->post(Tester => post_connect => @_) },
                on_unknown_message => sub { $kernel->post(Tester => unknown_event => @_) },
            );
        },
        post_connect => sub {
            my ($kernel, $heap, $err, $connection_id) = @_[KERNEL, HEAP, ARG0, ARG1];
            ok(!$err, 'post_connect called');                                   # 3
            ok($connection_id && $connection_id > 0, 'with a connection id');   # 4
            $heap->{connection_id} = $connection_id;
            $client->send_custom(kind => 'unknown', id => 1, payload => 'test_unknown');
        },
        unknown_event => sub {
            my ($kernel, $heap, $kind, $id, $data) = @_[KERNEL, HEAP, ARG0 .. ARG2];
            ok($kind eq 'result' && $id == 1, 'unknown_event called');          # 5
            like($data, qr/type 'unknown'/, "data names type 'unknown'");       # 6
            $kernel->post(foo => setup => $heap->{connection_id});
        },
        continue => sub {
            pass('Tester::continue called');                                    # 10
            StageBus::POE::Proxy->subscribe(
                client         => $client,
                session        => 'FooSession',
                return_event   => 'post_subscription',
                response_event => 'answered',
                gone_event     => 'proxy_gone',
                tag            => \'tag_three',
            );
        },
        post_subscription => sub {
            my ($kernel, $r) = @_[KERNEL, ARG0];
            ok($r->{success} && $kernel->alias_resolve('FooSession'),
                'post_subscription: success, and the proxy session FooSession exists');   # 11
            is(${ $r->{tag} }, 'tag_three', 'post_subscription: tag');          # 12
            $client->listing(on_listing => sub { $kernel->post(Tester => post_listing => @_) });
        },
        post_listing => sub {
            my ($kernel, $err, $sessions) = @_[KERNEL, ARG0, ARG1];
            ok(!$err && @$sessions == 1 && $sessions->[0]{name} eq 'FooSession',
                'post_listing: exactly FooSession');                            # 13
            is_deeply([sort @{ $sessions->[0]{methods} }], [qw(bar foo yar)],
                'listed with its methods foo, bar, yar');                        # 14
            $kernel->post(FooSession => foo => 'string');
            $kernel->post(FooSession => bar => 1);
            $kernel->post(FooSession => yar => 0);
        },
        answered   => sub { push @answers, $_[ARG1]{result} },
        proxy_gone => sub { push @gone, $_[ARG0] },
        finish     => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            # The answers and the gone notice may still be on their way.
            if (@answers < 3 || !@gone) {
                $kernel->delay(finish => 0.01);
                return;
            }
            is_deeply([@answers, map { $_->{session_name} } @gone], ['foo string', 'bar 1', 'yar 0', 'FooSession'],
                'Tester::finish: each post answered in order; the rescind took the proxy away'); # 20
            $kernel->alias_remove('Tester');
            StageBus::POE::Proxy->unsubscribe(alias => 'FooSession', return_event => 'done', tag => \'tag6');
        },
        done => sub {
            my ($kernel, $r) = @_[KERNEL, ARG0];
            ok($r->{success} && !$kernel->alias_resolve('FooSession'), 'done called: success, no proxy left');  # 21
            is(${ $r->{tag} }, 'tag6', 'done: tag');                            # 22
            $kernel->delay('timeout');
            $kernel->post(stagebus => 'sb_shutdown');
        },
        timeout => sub {
            diag('timed out; ran: ' . join(' ', map { $_->[0] } @ran));
            $_[KERNEL]->alias_remove('Tester');
            $host->shutdown;
        },
    },
);

POE::Kernel->run();
pass('the event loop ended');                                                   # 23
