#!/usr/bin/perl
# "Answer quit, then leave": a service answers a call and in the same
# loop turn lets go of its client (close in the handler, dropping the
# client in the handler, close from a 0 ms timer, close_gracefully). The
# caller gets the answer, never publisher_gone; close_gracefully reports
# completion (undef), and again on a closed client invalid_state.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use StageBus;

alarm 60;

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my $caller = StageBus::Client->new(loop => $loop, address => $broker->address);

my %leave = (
    close => sub { my ($svc) = @_; $$svc->close },
    drop  => sub { my ($svc) = @_; undef $$svc },
    timer => sub {
        my ($svc) = @_;
        my $client = $$svc;
        $loop->timer(after_ms => 0, cb => sub { $client->close; undef $client });
    },
    graceful => sub {
        my ($svc, $closed) = @_;
        $$svc->close_gracefully(on_done => sub { $$closed = [ $_[0] ] });
    },
);

for my $how (qw(close drop timer graceful)) {
    my $svc = StageBus::Client->new(loop => $loop, address => $broker->address);
    my $closed;
    my $stage = StageBus::Stage->new(
        loop     => $loop,
        name     => 'Quitter',
        handlers => {
            quit => sub {
                my ($ctx) = @_;
                $ctx->req->return(args => { bye => $how });
                $leave{$how}->(\$svc, \$closed);
            },
        },
    );
    my ($published, $remote);
    $stage->publish(client => $svc, session => "Svc-$how", on_done => sub { $published = !$_[0] });
    $loop->run_until(sub { $published }, timeout_ms => 5000) or BAIL_OUT("publish failed");
    $caller->subscribe(session => "Svc-$how", on_subscribed => sub { $remote = $_[1] });
    $loop->run_until(sub { $remote }, timeout_ms => 5000) or BAIL_OUT("subscribe failed");

    my $got;
    my $req = $remote->request(
        method    => 'quit',
        on_return => sub { $got = ['return', $_[0]->args->{bye}] },
        on_error  => sub { $got = ['error', $_[0]->rsp->error] },
    );
    $loop->run_until(sub { $got }, timeout_ms => 5000);
    is_deeply($got, ['return', $how], "$how: the caller got the answer given just before")
        or diag(explain($got));
    if ($how eq 'graceful') {
        $loop->run_until(sub { $closed }, timeout_ms => 5000);
        ok($closed && !defined $closed->[0], 'close_gracefully reported completion (no error)');
        my $again;
        $svc->close_gracefully(on_done => sub { $again = [ $_[0] ] });
        $loop->run_until(sub { $again }, timeout_ms => 5000);
        ok($again && blessed($again->[0]) && $again->[0]->is('invalid_state'),
            'close_gracefully of a closed client reports invalid_state');
    }
    undef $req;
    undef $remote;
}

my $svc = StageBus::Client->new(loop => $loop, address => $broker->address);
$svc->set_linger(250);
my $e = do { local $@; eval { $svc->set_linger(-1) }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'set_linger refuses a negative time');

done_testing;
