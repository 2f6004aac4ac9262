#!/usr/bin/perl
# A call across two federated brokers (issue 19): a stage published
# through one broker is called through the other exactly as a local one
# (call_sync's answer, emits in order then the return, no_such_method),
# and sees the caller's name marked with its broker. The brokers join a
# nats-server with JetStream that this test starts on a free loopback
# port (the binary from NATS_SERVER, else from the PATH); skipped when
# there is none.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use StageBus;

my $server = $ENV{NATS_SERVER};
unless (defined $server && -x $server) {
    ($server) = grep { -x } map { "$_/nats-server" } split /:/, ($ENV{PATH} // '');
}
plan skip_all => 'no nats-server (set NATS_SERVER or put it on the PATH)'
    unless defined $server;

alarm 120;

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
        or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# The server: JetStream on, its store in a temp dir, stopped at the end.
my $dir  = tempdir(CLEANUP => 1);
my $port = free_port();
open my $cf, '>', "$dir/nats.conf" or die "nats.conf: $!";
print $cf "listen: 127.0.0.1:$port\njetstream { store_dir: \"$dir/js\" }\n";
close $cf;
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    open STDOUT, '>', "$dir/server.log";
    open STDERR, '>&', \*STDOUT;
    exec $server, '-c', "$dir/nats.conf" or POSIX::_exit(127);
}
# Stopped by its pid; the test's own exit status is kept.
END { if ($pid) { my $status = $?; kill 'KILL', $pid; waitpid $pid, 0; $? = $status } }
my $up;
for (1 .. 200) {
    last if $up = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp');
    select undef, undef, undef, 0.05;
}
ok($up, 'nats-server listens') or BAIL_OUT('nats-server did not start');
close $up;

my $loop = StageBus::Loop->new;
my $ns   = "perl$$";
my @brokers = map {
    StageBus::Broker->new(
        loop      => $loop,
        listen    => 'tcp://127.0.0.1:0',
        federate  => "nats://127.0.0.1:$port",
        broker_id => "p$_",
        namespace => $ns,
    )
} 1, 2;

my ($c1, $c2);
my $caller = StageBus::Client->new(loop => $loop, address => $brokers[0]->address,
    name => 'perl caller', on_connect => sub { $c1 = 1 });
my $svc = StageBus::Client->new(loop => $loop, address => $brokers[1]->address,
    on_connect => sub { $c2 = 1 });
$loop->run_until(sub { $c1 && $c2 }, timeout_ms => 10000) or BAIL_OUT('connect failed');

my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Svc',
    handlers => {
        echo  => sub { my ($ctx) = @_; $ctx->req->return(args => $ctx->args) },
        count => sub {
            my ($ctx) = @_;
            my $req = $ctx->req;
            $req->emit(type => 'tick', args => { i => $_ }) for 0 .. $ctx->args->{n} - 1;
            $req->return(args => { count => $ctx->args->{n} });
        },
        who => sub {
            my ($ctx) = @_;
            my $c = $ctx->req->caller || {};
            $ctx->req->return(args => { name => $c->{client_name} // '' });
        },
    },
);

# The directory is ready once the brokers reached NATS: until then a
# publish fails with timeout.
my $published;
for (1 .. 100) {
    my $done;
    $stage->publish(client => $svc, session => 'Svc', on_done => sub { $done = [$_[0]] });
    $loop->run_until(sub { $done }, timeout_ms => 15000);
    my $err = $done && $done->[0];
    if (!$done || ($err && $err->name eq 'timeout')) {
        $loop->run_until(sub { 0 }, timeout_ms => 100);
        next;
    }
    $published = !$err;
    diag($err->as_string) if $err;
    last;
}
ok($published, 'published through broker p2');

# Called through p1 once its directory has it.
my $reply;
for (1 .. 200) {
    $reply = eval { $caller->call_sync(session => 'Svc', method => 'echo', args => { text => 'across' }, timeout => 10) };
    last if $reply;
    die $@ unless "$@" =~ /no_such_session/;
    $loop->run_until(sub { 0 }, timeout_ms => 50);
}
is_deeply($reply, { text => 'across' }, 'call_sync across brokers returns the answer');

my (@ticks, $final);
$caller->call(
    session     => 'Svc',
    method      => 'count',
    args        => { n => 200 },
    on_response => sub {
        my ($ctx) = @_;
        my $rsp = $ctx->rsp;
        if ($rsp->is_final) { $final = $rsp->error ? $rsp->error->name : $rsp->type }
        else                { push @ticks, $ctx->args->{i} }
    },
);
$loop->run_until(sub { defined $final }, timeout_ms => 20000);
is($final, 'return', 'the streamed call returns');
is_deeply(\@ticks, [0 .. 199], '200 emits across brokers, in order');

my $err = do { local $@; eval { $caller->call_sync(session => 'Svc', method => 'nope', timeout => 10) }; $@ };
like("$err", qr/no_such_method/, 'no_such_method across brokers');

is_deeply($caller->call_sync(session => 'Svc', method => 'who', timeout => 10),
    { name => 'perl caller (via broker p1)' }, 'the service sees the remote caller, marked');

undef $stage;
undef $caller;
undef $svc;
$_->close for @brokers;
done_testing;
