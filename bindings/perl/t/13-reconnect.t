#!/usr/bin/perl
# Reconnect (issue 12, item 2): a broker closes and a new one listens on
# the same address; a reconnecting service publishes its session again by
# itself, a reconnecting caller's remote stage works again, each call in
# flight ended once with broker_gone, and the connection events arrive in
# order. Then: a dead first address and a working second one; fail_fast;
# bad settings croak.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use File::Temp qw(tempdir);
use StageBus;

alarm 60;

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my $address = $broker->address;
my (@events, @svc_events);
my $svc = StageBus::Client->new(
    loop                => $loop,
    address             => $address,
    reconnect           => { initial_delay_ms => 20, max_delay_ms => 200 },
    on_connection_event => sub { push @svc_events, $_[0] },
);
my $caller = StageBus::Client->new(loop => $loop, address => $address);
$caller->set_reconnect(initial_delay_ms => 20, max_delay_ms => 200, buffer_limit => 64,
    republish_window_ms => 5000, resubscribe_wait_ms => 20000);
$caller->on_connection_event(sub {
    my ($event, $session, $err) = @_;
    push @events, $event . ($err ? ' ' . $err->name : '');
});

my @kept;    # requests held unanswered
my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Svc',
    handlers => {
        echo => sub { $_[0]->req->return(args => $_[0]->args) },
        hold => sub { push @kept, $_[0]->req->keep },    # never answers
    },
);
my ($published, $remote);
$stage->publish(client => $svc, session => 'Svc', on_done => sub { $published = !$_[0] });
$loop->run_until(sub { $published }, timeout_ms => 5000) or BAIL_OUT("publish failed");
$caller->subscribe(session => 'Svc', on_subscribed => sub { $remote = $_[1] });
$loop->run_until(sub { $remote }, timeout_ms => 5000) or BAIL_OUT("subscribe failed");

sub ask {
    my ($r) = @_;
    my $got;
    my $req = $r->request(
        method    => 'echo',
        args      => { n => 7 },
        on_return => sub { $got = 'return' },
        on_error  => sub { $got = $_[0]->rsp->error->name },
    );
    $loop->run_until(sub { defined $got }, timeout_ms => 5000);
    return $got;
}
is(ask($remote), 'return', 'the remote stage answers');

my @ends;
my @held = map {
    $remote->request(method => 'hold', on_error => sub { push @ends, $_[0]->rsp->error })
} 1 .. 3;
$loop->run_until(sub { 0 }, timeout_ms => 100);
$broker->close;
undef $broker;
$loop->run_until(sub { @ends == 3 }, timeout_ms => 5000);
ok((3 == grep { blessed($_) && $_->is('broker_gone') } @ends), 'each call in flight ended with broker_gone');
like($ends[0]->message, qr/may or may not/, 'saying the publisher may or may not have run it');

$broker = StageBus::Broker->new(loop => $loop, listen => $address);
$loop->run_until(sub { @events >= 2 && @svc_events >= 2 }, timeout_ms => 10000);
is_deeply(\@events, ['disconnected broker_gone', 'reconnected'], 'the caller heard disconnected, then reconnected');
is_deeply(\@svc_events, ['disconnected', 'reconnected'], 'so did the service');
my $answer = 'none';
for (1 .. 200) {
    $answer = ask($remote);
    last if $answer eq 'return';
    $loop->run_until(sub { 0 }, timeout_ms => 20);
}
is($answer, 'return', 'the old remote stage works again: the service published Svc again by itself');
$loop->run_until(sub { 0 }, timeout_ms => 100);
is(scalar @ends, 3, 'nothing ended twice');

# A dead first address, then the broker.
my $dir = tempdir(CLEANUP => 1);
my $connected;
my $listed = StageBus::Client->new(
    loop       => $loop,
    address    => "unix:$dir/nobody.sock",
    on_connect => sub { $connected = $_[0] ? 'failed' : 'ok' },
);
$listed->set_reconnect(initial_delay_ms => 10, max_delay_ms => 100, max_attempts => 5, addresses => [$address]);
$loop->run_until(sub { $connected }, timeout_ms => 10000);
is($connected, 'ok', 'first address dead, the second one answered');

# Fail fast while reconnecting.
my $fast = StageBus::Client->new(loop => $loop, address => $address);
$fast->set_reconnect(initial_delay_ms => 5000, max_delay_ms => 5000, fail_fast => 1);
my @fast_events;
$fast->on_connection_event(sub { push @fast_events, $_[0] });
my $names;
$fast->listing(on_listing => sub { $names = 1 });
$loop->run_until(sub { $names }, timeout_ms => 5000);
$broker->close;
$loop->run_until(sub { @fast_events }, timeout_ms => 5000);
my $lerr;
$fast->listing(on_listing => sub { $lerr = $_[0] // 'none' });
$loop->run_until(sub { $lerr }, timeout_ms => 5000);
ok(blessed($lerr) && $lerr->is('broker_gone'), 'fail_fast: a listing while reconnecting ends at once with broker_gone');

# Bad settings.
my $e = do { local $@; eval { $caller->set_reconnect(initial_delay_ms => -1) }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'set_reconnect refuses a negative delay');
$e = do { local $@; eval { $caller->set_reconnect(initial_delay_ms => 300, max_delay_ms => 200) }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'set_reconnect refuses an initial delay over the maximum');
$e = do { local $@; eval { $caller->set_reconnect(addresses => 'x') }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'set_reconnect wants an array of addresses');
$caller->disable_reconnect;
$e = do { local $@; eval { $caller->add_address($address) }; $@ };
ok(blessed($e) && $e->is('invalid_state'), 'add_address with reconnecting off is invalid_state');
$e = do { local $@; eval { $caller->on_connection_event('nope') }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'on_connection_event needs a code ref');

undef $_ for @held;
done_testing;
