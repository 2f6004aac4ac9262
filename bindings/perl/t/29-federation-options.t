#!/usr/bin/perl
# Federation options (issue 19): bad settings (heartbeats too) croak with
# invalid_argument;
# a federated broker serves its own clients while its NATS servers are
# unreachable. Calls across brokers: t/30-federation-call.t (and, from
# Rust, tests/federation*.rs).
use strict;
use warnings;

use Test::More;
use StageBus;

alarm 60;

my $loop = StageBus::Loop->new;
for my $bad (
    [broker_id => 'b1'],
    [federate => 'nats://127.0.0.1:1'],
    [federate => 'nats://127.0.0.1:1', broker_id => 'bad id'],
    [federate => 'wss://127.0.0.1:1', broker_id => 'b1'],
    [federate => 'nats://127.0.0.1:1', broker_id => 'b1', nats_user => 'u'],
    [federate => 'nats://127.0.0.1:1', broker_id => 'b1', nats_nkey => '/nonexistent/fed.nk'],
    [federate => 'nats://127.0.0.1:1', broker_id => 'b1', nats_nkey => 'x.nk', nats_token => 't'],
    [nats_nkey => 'x.nk'],
    [federate => 'nats://127.0.0.1:1', broker_id => 'b1', nats_tls_cert => 'c.pem'],
    [federate => 'nats://127.0.0.1:1', broker_id => 'b1', nats_tls_ca => '/nonexistent/ca.pem'],
    [nats_tls_ca => 'ca.pem'],
    [hb_interval_ms => 100],
    [nats_sys_events => 1],
    [federate => 'nats://127.0.0.1:1', broker_id => 'b1', hb_interval_ms => 0],
    [federate => 'nats://127.0.0.1:1', broker_id => 'b1', hb_interval_ms => 'soon'],
    [federate => 'nats://127.0.0.1:1', broker_id => 'b1', hb_timeout_ms => 400],
    [federate => 'nats://127.0.0.1:1', broker_id => 'b1', hb_interval_ms => 900, hb_timeout_ms => 900],
) {
    my $ok = eval { StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0', @$bad); 1 };
    ok(!$ok, "refused: @$bad");
    like($@, qr/invalid_argument/, '... as invalid_argument');
}

my $broker = StageBus::Broker->new(
    loop       => $loop,
    listen     => 'tcp://127.0.0.1:0',
    federate   => 'nats://127.0.0.1:1,nats://127.0.0.1:2',
    broker_id  => 'perl-b1',
    namespace  => 'perl_test',
    nats_token => 't',
    hb_interval_ms => 200,
    hb_timeout_ms  => 3000,
    nats_sys_events => 1,
);
my $connected;
my $client = StageBus::Client->new(
    loop       => $loop,
    address    => $broker->address,
    on_connect => sub { $connected = 1 },
);
$loop->run_until(sub { $connected }, timeout_ms => 5000);
ok($connected, 'a federated broker serves its clients while NATS is unreachable');
is($broker->pending_calls, 0, 'no calls pending');
undef $client;
$broker->close;

# A good NKey seed file (the NATS clients' test user) is taken.
my $seed_file = "/tmp/sb-perl-nkey-$$.nk";
open my $fh, '>', $seed_file or die "$seed_file: $!";
print $fh "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY\n";
close $fh;
my $nkeyed = eval {
    StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0',
        federate => 'nats://127.0.0.1:1', broker_id => 'perl-b2', nats_nkey => $seed_file);
};
unlink $seed_file;
ok($nkeyed, 'a broker with an NKey seed file starts') or diag($@);
$nkeyed->close if $nkeyed;

done_testing;
