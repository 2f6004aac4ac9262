#!/usr/bin/perl
# What a reconnect restores besides sessions and subscriptions: a signal
# match and a name watch. A broker closes and a new one listens on the
# same Unix socket. The publisher of Svc runs on a loop of its own, turned
# only when this test says so, so the listener is back first: its renewed
# watch reports Svc gone (publisher_gone), then appeared once the
# publisher is back by itself, and its match hears the signals emitted
# after the restart. No restore_failed event.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use StageBus;

alarm 60;

my $dir     = tempdir(CLEANUP => 1);
my $address = "unix:$dir/b.sock";
my $loop    = StageBus::Loop->new;    # the broker and the listener
my $ploop   = StageBus::Loop->new;    # the publisher
my $broker  = StageBus::Broker->new(loop => $loop, listen => $address);
my %quick   = (initial_delay_ms => 20, max_delay_ms => 200);

# Turns both loops until $cond holds (bounded).
sub both_until {
    my ($cond) = @_;
    for (1 .. 2000) {
        return 1 if $cond->();
        $loop->run_until($cond, timeout_ms => 5);
        $ploop->run_until($cond, timeout_ms => 5);
    }
    return $cond->();
}

my $publisher = StageBus::Client->new(loop => $ploop, address => $address, reconnect => {%quick});
my $stage = StageBus::Stage->new(loop => $ploop, name => 'Svc', handlers => {});
my $published;
$stage->publish(client => $publisher, session => 'Svc', on_done => sub { $published = !$_[0] });
both_until(sub { $published }) or BAIL_OUT('publish failed');

my (@events, @names, @signals, $matched, $watched);
my $client = StageBus::Client->new(
    loop                => $loop,
    address             => $address,
    reconnect           => {%quick},
    on_connection_event => sub { push @events, $_[0] . (defined $_[1] ? " $_[1]" : '') },
);
my $mid = $client->add_match(
    session   => 'Svc',
    signal    => 'tick*',
    on_signal => sub { push @signals, $_[1] },
    on_done   => sub { $matched = !$_[0] },
);
my $wid = $client->watch(
    name     => 'Sv*',
    on_event => sub {
        my ($e) = @_;
        push @names, "$e->{event} $e->{name}" . ($e->{reason} ? ' ' . $e->{reason}->name : '');
    },
    on_done => sub { $watched = !$_[0] },
);
$loop->run_until(sub { $matched && $watched }, timeout_ms => 10000);
ok($matched && $watched, 'a reconnecting client with a match and a watch');
is_deeply(\@names, ['present Svc'], 'the watch reports Svc present');
$publisher->emit_signal(session => 'Svc', signal => 'tick1');
both_until(sub { @signals });
is_deeply(\@signals, ['tick1'], 'the match hears a signal');

$broker->close;
undef $broker;
$loop->run_until(sub { grep { $_ eq 'disconnected' } @events }, timeout_ms => 10000);
$broker = StageBus::Broker->new(loop => $loop, listen => $address);
# The publisher's loop stands still: Svc is not published again yet.
$loop->run_until(sub { @names >= 2 }, timeout_ms => 10000);
is_deeply(\@names, ['present Svc', 'gone Svc publisher_gone'],
    'after the restart the renewed watch reports the name gone meanwhile');
ok((grep { $_ eq 'reconnected' } @events), 'the client reconnected');

both_until(sub { @names >= 3 });
is($names[2], 'appeared Svc', 'the publisher came back by itself and the watch saw it');

# The match may be renewed a little after the reconnect: emit until heard.
both_until(sub {
    local $@;
    eval { $publisher->emit_signal(session => 'Svc', signal => 'tick2') };
    grep { $_ eq 'tick2' } @signals;
});
ok((grep { $_ eq 'tick2' } @signals), 'the renewed match hears signals emitted after the restart');
is(scalar(grep { $_ eq 'tick1' } @signals), 1, 'nothing heard twice');
ok(!(grep { /restore_failed/ } @events), 'nothing failed to be restored') or diag explain \@events;

my ($removed, $unwatched);
$client->remove_match(id => $mid, on_done => sub { $removed = !$_[0] });
$client->unwatch(id => $wid, on_done => sub { $unwatched = !$_[0] });
$loop->run_until(sub { defined $removed && defined $unwatched }, timeout_ms => 10000);
ok($removed && $unwatched, 'the renewed match and watch end as any other');

done_testing;
