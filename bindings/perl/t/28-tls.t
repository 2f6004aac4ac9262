#!/usr/bin/perl
# TLS (issue 18): a broker on tls://127.0.0.1:0 asking for client
# certificates (mutual TLS); clients presenting alice's certificate: a
# call goes through and the publisher sees the caller identity
# "CN=alice". A client without a certificate is refused, and the broker
# counts the failed handshake. A missing certificate file is an error
# naming it.
#
# The certificates: the directory $STAGEBUS_TEST_TLS (tests/perl.rs makes
# it), else made here with the openssl command.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use StageBus;

alarm 60;

sub openssl_certs {
    my ($dir) = @_;
    # openssl's chatter stays out of the TAP stream.
    my $run = sub {
        open my $out, '>&', \*STDOUT or die "dup: $!";
        open my $err, '>&', \*STDERR or die "dup: $!";
        open STDOUT, '>', '/dev/null' or die "/dev/null: $!";
        open STDERR, '>', '/dev/null' or die "/dev/null: $!";
        my $st = system('openssl', @_);
        open STDOUT, '>&', $out or die "dup: $!";
        open STDERR, '>&', $err or die "dup: $!";
        $st == 0 or die "openssl @_ failed\n";
    };
    my @key = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes');
    $run->('req', '-x509', @key, '-keyout', "$dir/ca.key", '-out', "$dir/ca.pem",
        '-subj', '/CN=perl test CA', '-days', '2');
    my %ext = (
        broker => "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        alice  => "extendedKeyUsage=clientAuth\n",
    );
    for my $who (sort keys %ext) {
        open my $fh, '>', "$dir/$who.ext" or die "$who.ext: $!";
        print $fh $ext{$who};
        close $fh;
        $run->('req', @key, '-keyout', "$dir/$who.key", '-out', "$dir/$who.csr", '-subj', "/CN=$who");
        $run->('x509', '-req', '-in', "$dir/$who.csr", '-CA', "$dir/ca.pem", '-CAkey', "$dir/ca.key",
            '-CAcreateserial', '-out', "$dir/$who.pem", '-days', '2', '-extfile', "$dir/$who.ext");
    }
    return $dir;
}

my $certs = $ENV{STAGEBUS_TEST_TLS};
if (!$certs) {
    my $dir = tempdir(CLEANUP => 1);
    $certs = eval { openssl_certs($dir) }
        or plan skip_all => "no STAGEBUS_TEST_TLS and no openssl command to make certificates: $@";
}

my $loop = StageBus::Loop->new;
my $e = eval {
    StageBus::Broker->new(
        loop     => $loop,
        listen   => 'tls://127.0.0.1:0',
        tls_cert => "$certs/broker.pem",
        tls_key  => "$certs/nonexistent.key",
    );
    1;
} ? undef : $@;
ok(ref $e && $e->name eq 'io' && $e->as_string =~ /nonexistent\.key/, 'a missing key file is an io error naming it')
    or diag($e);

my $broker = StageBus::Broker->new(
    loop          => $loop,
    listen        => 'tls://127.0.0.1:0',
    tls_cert      => "$certs/broker.pem",
    tls_key       => "$certs/broker.key",
    tls_client_ca => "$certs/ca.pem",
);
like($broker->address, qr{\Atls://127\.0\.0\.1:\d+\z}, 'the broker listens on tls://');

my %alice = (tls_ca => "$certs/ca.pem", tls_cert => "$certs/alice.pem", tls_key => "$certs/alice.key");
my $caller_conn;
my $service = StageBus::Client->new(loop => $loop, address => $broker->address, %alice);
my $caller = StageBus::Client->new(
    loop       => $loop,
    address    => $broker->address,
    %alice,
    on_connect => sub { $caller_conn = $_[1] // 'failed' },
);
$loop->run_until(sub { $caller_conn }, timeout_ms => 20000) or BAIL_OUT('connect failed');

my $who;
my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Who',
    handlers => { who => sub { my ($ctx) = @_; $who = $ctx->req->caller; $ctx->req->return } },
);
my $published;
$stage->publish(client => $service, session => 'Who', on_done => sub { $published = $_[0] || 'ok' });
$loop->run_until(sub { $published }, timeout_ms => 20000);
is($published, 'ok', 'published through tls://');

my $remote;
$caller->subscribe(session => 'Who', on_subscribed => sub { $remote = $_[1] });
$loop->run_until(sub { $remote }, timeout_ms => 20000) or BAIL_OUT('subscribe failed');
my $done;
my $req = $remote->request(method => 'who', on_return => sub { $done = 1 });
$loop->run_until(sub { $done }, timeout_ms => 20000);
ok($done, 'a call through tls:// returns');
is($who && $who->{identity}, 'CN=alice', 'the publisher sees the certificate subject as the identity');

my $refused;
my $stranger = StageBus::Client->new(
    loop       => $loop,
    address    => $broker->address,
    tls_ca     => "$certs/ca.pem",
    on_connect => sub { $refused = $_[0] },
);
$loop->run_until(sub { $refused && $broker->tls_handshake_failures >= 1 }, timeout_ms => 20000);
ok(ref $refused && $refused->as_string =~ /certificate/, 'a client without a certificate is refused')
    or diag(ref $refused ? $refused->as_string : $refused);
is($broker->tls_handshake_failures, 1, 'the failed handshake is counted');

undef $req;
undef $remote;
undef $stage;
undef $stranger;
undef $caller;
undef $service;
undef $broker;
done_testing;
