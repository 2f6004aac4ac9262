#!/usr/bin/perl
# Who calls and who may (issue 18): a broker on a Unix socket with named
# tokens, socket mode 0600 and a policy file; a client with the "app"
# token may not publish Admin (access_denied, counted), one with "ops"
# may; a call from the app client, which named itself, reaches the
# publisher with the caller's uid, gid, pid, identity and client name.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use StageBus;

alarm 60;

my $dir = tempdir(CLEANUP => 1);
open my $fh, '>', "$dir/policy" or die "policy: $!";
print $fh "allow token=ops own Admin\nallow anyone call *\n";
close $fh;

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(
    loop         => $loop,
    listen       => "unix:$dir/bus.sock",
    named_tokens => { ops => 'ops-secret', app => 'app-secret' },
    socket_mode  => '0600',
    policy_file  => "$dir/policy",
);
is((stat "$dir/bus.sock")[2] & 0777, 0600, 'the socket file has mode 0600');

my $app_conn;
my $ops = StageBus::Client->new(loop => $loop, address => $broker->address, token => 'ops-secret');
my $app = StageBus::Client->new(
    loop       => $loop,
    address    => $broker->address,
    token      => 'app-secret',
    name       => 'perl caller',
    on_connect => sub { $app_conn = $_[1] },
);
$loop->run_until(sub { $app_conn }, timeout_ms => 5000) or BAIL_OUT('connect failed');

my $who;
my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Admin',
    handlers => { who => sub { my ($ctx) = @_; $who = $ctx->req->caller; $ctx->req->return } },
);
my ($denied, $published);
$stage->publish(client => $app, session => 'Admin', on_done => sub { $denied = $_[0] || 'ok' });
$loop->run_until(sub { $denied }, timeout_ms => 5000);
ok(ref $denied && $denied->name eq 'access_denied', 'the policy denies app publishing Admin')
    or diag(ref $denied ? $denied->as_string : $denied);
is($broker->access_denied, 1, 'the denial is counted');

my $stage2 = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Admin',
    handlers => { who => sub { my ($ctx) = @_; $who = $ctx->req->caller; $ctx->req->return } },
);
$stage2->publish(client => $ops, session => 'Admin', on_done => sub { $published = !$_[0] });
$loop->run_until(sub { defined $published }, timeout_ms => 5000);
ok($published, 'ops may publish Admin');

my $remote;
$app->subscribe(session => 'Admin', on_subscribed => sub { $remote = $_[1] });
$loop->run_until(sub { $remote }, timeout_ms => 5000) or BAIL_OUT('subscribe failed');
my $done;
my $req = $remote->request(method => 'who', on_return => sub { $done = 1 });
$loop->run_until(sub { $done }, timeout_ms => 5000);
is_deeply(
    $who,
    {
        connection  => $app_conn,
        uid         => $<,
        gid         => (split ' ', $()[0],
        pid         => $$,
        identity    => 'app',
        client_name => 'perl caller',
    },
    'the publisher sees the caller identity'
);

eval { StageBus::Broker->new(loop => $loop, listen => "unix:$dir/x.sock", socket_mode => 'rw') };
like($@, qr/socket_mode must be an octal/, 'a bad socket mode croaks');
eval { StageBus::Broker->new(loop => $loop, listen => "unix:$dir/y.sock", policy_file => "$dir/none") };
ok(ref $@ && $@->name eq 'io', 'a missing policy file croaks with io');

done_testing;
