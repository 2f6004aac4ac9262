#!/usr/bin/perl
# The broker's limits from Perl (issue 13): set and read by name, bad
# names and values croak, and a limit is enforced and counted: a publish
# over the registry budget per connection fails with limit_exceeded, and
# at a memory budget of 1 byte a listing is refused.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use StageBus;

alarm 60;

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
is($broker->limit('max-hello-frame'), 512, 'a default read by name');
$broker->set_limit('write-timeout-ms', 2500);
is($broker->limit('write-timeout-ms'), 2500, 'a limit set by name');
$broker->set_limit('max-pending-per-link', 8);
is($broker->limit('max-pending-per-link'), 8, 'a federation limit, same table');
my $e = do { local $@; eval { $broker->set_limit('max-nothing', 1) }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'an unknown name croaks');
like("$e", qr/max-memory/, 'naming every limit');
$e = do { local $@; eval { $broker->set_limit('max-memory', 0) }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'a 0 that would refuse everything croaks');
$e = do { local $@; eval { $broker->set_limit('max-memory', -1) }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'a negative value croaks');

$broker->set_limit('max-registry-bytes-per-connection', 200);
my $client = StageBus::Client->new(loop => $loop, address => $broker->address);
my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Svc',
    handlers => { ('x' x 200) => sub { }, m => sub { } },
);
my ($big, $small);
$stage->publish(client => $client, session => 'Big', methods => ['x' x 200],
    on_done => sub { $big = $_[0] // 'ok' });
$loop->run_until(sub { defined $big }, timeout_ms => 10000);
ok(blessed($big) && $big->is('limit_exceeded'), 'a publish over the registry budget fails with limit_exceeded');
is($broker->limits_exceeded, 1, 'and is counted');
$stage->publish(client => $client, session => 'Small', methods => ['m'],
    on_done => sub { $small = $_[0] // 'ok' });
$loop->run_until(sub { defined $small }, timeout_ms => 10000);
is($small, 'ok', 'a smaller one passes');

$broker->set_limit('max-memory', 1);
my $listed;
$client->listing(on_listing => sub { $listed = [@_] });
$loop->run_until(sub { defined $listed }, timeout_ms => 10000);
my ($err) = grep { blessed($_) && $_->isa('StageBus::Error') } @$listed;
ok($err && $err->is('limit_exceeded'), 'at the memory budget a listing is refused');
is($broker->limits_exceeded, 2, 'counted');

done_testing;
