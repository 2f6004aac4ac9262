#!/usr/bin/perl
# Name watches and name modes (issue 14): a watch reports the current
# state, then appeared / owner_changed / gone in order; the owner of a
# queue name is killed with -9 in the middle of traffic (a forked child):
# its calls end once with publisher_gone and the standby serves the next
# call; balance over 3 publishers shares the calls; another mode is
# name_mode_conflict.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use POSIX ();
use IO::Select;
use StageBus;

alarm 120;

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my $addr   = $broker->address;
my $caller = StageBus::Client->new(loop => $loop, address => $addr);

my (@events, $watched);
my $wid = $caller->watch(
    name     => 'Q',
    on_event => sub {
        my ($e) = @_;
        push @events, $e->{event} . ($e->{reason} ? ' ' . $e->{reason}->name : '');
    },
    on_done => sub { $watched = 1 },
);
$loop->run_until(sub { $watched }, timeout_ms => 10000);
is_deeply(\@events, [], 'nothing published yet');

# The owner: a child process whose `hang` never answers and whose `who`
# returns its pid.
sub publisher_child {
    my ($mode) = @_;
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $r;
        my $lp = StageBus::Loop->new;
        my $c  = StageBus::Client->new(loop => $lp, address => $addr);
        my @kept;
        my $stage = StageBus::Stage->new(
            loop     => $lp,
            name     => 'Q',
            handlers => {
                who  => sub { $_[0]->req->return(args => { pid => $$ }) },
                hang => sub { push @kept, $_[0]->req->keep },
            },
        );
        my $ok;
        $stage->publish(client => $c, session => 'Q', mode => $mode, on_done => sub { $ok = !$_[0] });
        $lp->run_until(sub { $ok }, timeout_ms => 10000);
        syswrite $w, $ok ? "ready\n" : "failed\n";
        $lp->run_until(sub { 0 }, timeout_ms => 60000);
        POSIX::_exit(0);
    }
    close $w;
    # The broker lives on this loop: run it while the child publishes.
    # (The loop does not watch the pipe: turn it in short slices.)
    my $sel = IO::Select->new($r);
    for (1 .. 1000) {
        last if $sel->can_read(0);
        $loop->run_until(sub { 0 }, timeout_ms => 20);
    }
    my $line = <$r>;
    die "child did not publish" unless defined $line && $line eq "ready\n";
    return $pid;
}

my $owner = publisher_child('queue');
my $standby = publisher_child('queue');

my $remote;
$caller->subscribe(session => 'Q', on_subscribed => sub { $remote = $_[1] });
$loop->run_until(sub { $remote }, timeout_ms => 10000);

sub who {
    my $got;
    my $req = $remote->request(method => 'who', on_return => sub { $got = $_[0]->args->{pid} },
        on_error => sub { $got = 'error' });
    $loop->run_until(sub { defined $got }, timeout_ms => 10000);
    return $got;
}
is(who(), $owner, 'the owner serves');
my @hung = map { my $i = $_; my $slot = []; [$slot, $remote->request(method => 'hang',
    on_error => sub { my $x = $_[0]->rsp->error; push @$slot, ref $x ? $x->name : $x }, on_return => sub { push @$slot, 'return' })] } 1 .. 3;
my $listed;
$caller->listing(on_listing => sub { $listed = 1 });
$loop->run_until(sub { $listed }, timeout_ms => 10000);
kill 'KILL', $owner;
waitpid $owner, 0;
$loop->run_until(sub { !grep { !@{ $_->[0] } } @hung }, timeout_ms => 10000);
is_deeply([map { @{ $_->[0] } } @hung], [('publisher_gone') x 3], 'each call in flight ends with publisher_gone');
is(who(), $standby, 'the standby serves the next call');
is_deeply([map { scalar @{ $_->[0] } } @hung], [1, 1, 1], 'each ended once');
$loop->run_until(sub { @events >= 2 }, timeout_ms => 10000);
is_deeply(\@events, ['appeared', 'owner_changed'], 'the watch saw the appearance and the owner change');

# Another mode is refused.
my $stage = StageBus::Stage->new(loop => $loop, name => 'X', handlers => { who => sub { } });
my $conflict;
$stage->publish(client => $caller, session => 'Q', mode => 'balance', on_done => sub { $conflict = $_[0] });
$loop->run_until(sub { $conflict }, timeout_ms => 10000);
ok(blessed($conflict) && $conflict->is('name_mode_conflict'), 'another mode is name_mode_conflict');
my $e = do { local $@; eval { $stage->publish(client => $caller, session => 'Z', mode => 'lottery') }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'an unknown mode is refused');

kill 'KILL', $standby;
waitpid $standby, 0;
$loop->run_until(sub { @events >= 3 }, timeout_ms => 10000);
is($events[2], 'gone publisher_gone', 'the name is gone with its last publisher');
my $unwatched;
$caller->unwatch(id => $wid, on_done => sub { $unwatched = !$_[0] });
$loop->run_until(sub { $unwatched }, timeout_ms => 10000);
ok($unwatched, 'unwatch');

# Balance over three publishers.
my @pids = map { publisher_child('balance') } 1 .. 3;
undef $remote;
$caller->subscribe(session => 'Q', on_subscribed => sub { $remote = $_[1] });
$loop->run_until(sub { $remote }, timeout_ms => 10000);
my %share;
$share{ who() }++ for 1 .. 30;
is_deeply([sort keys %share], [sort @pids], 'every publisher serves') or diag explain { share => \%share, pids => \@pids };
ok(!grep({ $_ < 5 } values %share), 'each a share') or diag explain \%share;
kill 'KILL', $_ for @pids;
waitpid $_, 0 for @pids;

undef $remote;
done_testing;
