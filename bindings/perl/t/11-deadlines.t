#!/usr/bin/perl
# Deadlines travel (issue 12, item 3): a caller's timeout_ms reaches the
# callee as time_left_ms, locally and through a broker; without one it
# is undef; a request made while serving inherits the deadline (and a
# shorter timeout of its own wins); a client's default deadline applies
# to requests that set none, and 0 turns it off.
use strict;
use warnings;

use Test::More;
use StageBus;

alarm 60;

my $loop = StageBus::Loop->new;
my $child;
my $clock;
$clock = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Clock',
    handlers => {
        look => sub {
            my ($ctx) = @_;
            $ctx->req->return(args => { left => $ctx->req->time_left_ms // -1 });
        },
        run => sub {
            my ($ctx) = @_;
            my $mine = $ctx->req->time_left_ms // -1;
            my $child_ms = $ctx->args->{child_ms};
            $child = StageBus::Request->new(
                to        => $clock,
                method    => 'look',
                ($child_ms ? (timeout_ms => $child_ms) : ()),
                on_return => sub {
                    my ($c) = @_;
                    $c->req->return(args => { left => $c->args->{left}, mine => $mine });
                },
            );
        },
    },
);

sub ask {
    my ($to, $method, %o) = @_;
    my $got;
    my $req = StageBus::Request->new(
        to        => $to,
        method    => $method,
        args      => { child_ms => $o{child_ms} // 0 },
        (defined $o{timeout_ms} ? (timeout_ms => $o{timeout_ms}) : ()),
        on_return => sub { $got = { %{ $_[0]->args } } },
        on_error  => sub { $got = { error => $_[0]->rsp->error->code } },
    );
    $loop->run_until(sub { $got }, timeout_ms => 5000) or BAIL_OUT("no answer to $method");
    undef $child;
    return $got;
}

sub checks {
    my ($to, $where) = @_;
    my $got = ask($to, 'look', timeout_ms => 20000);
    ok($got->{left} > 0 && $got->{left} <= 20000, "$where: the callee reads the time left ($got->{left} ms)");
    $got = ask($to, 'look');
    is($got->{left}, -1, "$where: no deadline without a timeout");
    $got = ask($to, 'run', timeout_ms => 20000);
    ok($got->{mine} > 0 && $got->{left} > 0 && $got->{left} <= $got->{mine},
        "$where: a child inherits its parent's deadline ($got->{left} <= $got->{mine})");
    $got = ask($to, 'run', timeout_ms => 20000, child_ms => 3000);
    ok($got->{left} > 0 && $got->{left} <= 3000, "$where: a shorter child timeout wins ($got->{left} ms)");
}

checks($clock, 'local');

my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my $svc    = StageBus::Client->new(loop => $loop, address => $broker->address);
my $caller = StageBus::Client->new(loop => $loop, address => $broker->address);
my ($published, $remote);
$clock->publish(client => $svc, session => 'Clock', on_done => sub { $published = !$_[0] });
$loop->run_until(sub { $published }, timeout_ms => 5000) or BAIL_OUT("publish failed");
$caller->subscribe(session => 'Clock', on_subscribed => sub { $remote = $_[1] });
$loop->run_until(sub { $remote }, timeout_ms => 5000) or BAIL_OUT("subscribe failed");

checks($remote, 'remote');

$caller->set_default_timeout(10000);
my $got = ask($remote, 'look');
ok($got->{left} > 0 && $got->{left} <= 10000, "the client's default deadline applies ($got->{left} ms)");
$caller->set_default_timeout(0);
$got = ask($remote, 'look');
is($got->{left}, -1, 'a default of 0 turns it off');

done_testing;
