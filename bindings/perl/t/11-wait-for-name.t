#!/usr/bin/perl
# Waiting for a name: a caller subscribes with `wait` before its service
# publishes; the broker holds the subscribe (a listing on the same
# connection, answered in order, proves it arrived) and answers it once
# the service publishes, and the remote stage then works. A wait that
# expires is no_such_session once; a bad wait is refused at once.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use StageBus;

alarm 60;

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my $caller = StageBus::Client->new(loop => $loop, address => $broker->address);
my $svc    = StageBus::Client->new(loop => $loop, address => $broker->address);

my @expired;
$caller->subscribe(session => 'Never', wait => 0.03, on_subscribed => sub { push @expired, [@_] });
$loop->run_until(sub { @expired }, timeout_ms => 10000);
is(scalar @expired, 1, 'an expired wait is answered once');
ok(blessed($expired[0][0]) && $expired[0][0]->is('no_such_session'), 'as no_such_session');
like($expired[0][0]->message, qr/Session 'Never' was not published within 30 ms/, 'naming the session');

my @waited;
$caller->subscribe(session => 'Svc', wait => 60, on_subscribed => sub { push @waited, [@_] });
my $listed;
$caller->listing(on_listing => sub { $listed = [@_] });
$loop->run_until(sub { $listed }, timeout_ms => 10000);
is_deeply($listed->[1], [], 'nothing is published yet');
is(scalar @waited, 0, 'the subscribe waits');

my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Svc',
    handlers => { echo => sub { my ($ctx) = @_; $ctx->req->return(args => $ctx->args) } },
);
my $published;
$stage->publish(client => $svc, session => 'Svc', on_done => sub { $published = !$_[0] });
$loop->run_until(sub { @waited }, timeout_ms => 10000);
ok($published, 'the service published');
is(scalar @waited, 1, 'the waiting subscribe is answered once the session is published');
ok(!defined $waited[0][0] && blessed($waited[0][1]), 'with a remote stage');

my $got;
my $req = $waited[0][1]->request(
    method    => 'echo',
    args      => { text => 'hi' },
    on_return => sub { $got = $_[0]->args->{text} },
    on_error  => sub { $got = 'error: ' . $_[0]->rsp->error },
);
$loop->run_until(sub { defined $got }, timeout_ms => 10000);
is($got, 'hi', 'a request through the waited-for remote stage returns');

my $e = do { local $@; eval { $caller->subscribe(session => 'X', wait => 'soon', on_subscribed => sub { }) }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'a wait that is no number is refused');

undef $req;
@waited = ();
done_testing;
