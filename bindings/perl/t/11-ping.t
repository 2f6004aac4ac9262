#!/usr/bin/perl
# Liveness settings and the broker's going-away notice (issue 12, items 1
# and 4): with pings every 100 ms both ways, idle connections stay up (each
# side answers the other's pings); closing the broker ends a pending call
# with broker_gone saying the broker is going away; bad settings croak.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use StageBus;

alarm 60;

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
$broker->set_ping(100, 2);
my $lost;
my $svc    = StageBus::Client->new(loop => $loop, address => $broker->address);
my $caller = StageBus::Client->new(
    loop          => $loop,
    address       => $broker->address,
    on_disconnect => sub { $lost = $_[0] },
);
$_->set_ping(100, 2) for $svc, $caller;

my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Holder',
    handlers => { hold => sub { } },    # never answers
);
my ($published, $remote);
$stage->publish(client => $svc, session => 'Holder', on_done => sub { $published = !$_[0] });
$loop->run_until(sub { $published }, timeout_ms => 5000) or BAIL_OUT("publish failed");

# Idle for many ping intervals: nobody is taken for gone.
$loop->run_until(sub { 0 }, timeout_ms => 800);
ok(!$lost, 'an idle caller that answers pings stays connected');
my $names;
$caller->listing(on_listing => sub { $names = [ map { $_->{name} } @{ $_[1] || [] } ] });
$loop->run_until(sub { $names }, timeout_ms => 5000);
is_deeply($names, ['Holder'], 'an idle publisher that answers pings stays listed');

$caller->subscribe(session => 'Holder', on_subscribed => sub { $remote = $_[1] });
$loop->run_until(sub { $remote }, timeout_ms => 5000) or BAIL_OUT("subscribe failed");
my @errors;
my $req = $remote->request(method => 'hold', on_error => sub { push @errors, $_[0]->rsp->error });
$caller->listing(on_listing => sub { $names = 1 });
$loop->run_until(sub { $names && !ref $names }, timeout_ms => 5000);

$broker->close;
$loop->run_until(sub { @errors }, timeout_ms => 5000);
$loop->run_until(sub { 0 }, timeout_ms => 100);
is(scalar @errors, 1, 'the pending call ended once');
ok(blessed($errors[0]) && $errors[0]->is('broker_gone'), 'with broker_gone');
like($errors[0] && $errors[0]->message, qr/going away/, 'saying the broker is going away');

my $e = do { local $@; eval { $caller->set_ping(-1, 2) }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'set_ping refuses a negative interval');
$e = do { local $@; eval { $caller->set_ping(100, 2**32) }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'set_ping refuses a count over 32 bits');

undef $req;
undef $remote;
done_testing;
