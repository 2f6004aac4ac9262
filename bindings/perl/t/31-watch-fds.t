#!/usr/bin/perl
# A host that watches the loop's fds one by one: watch_fds tells it every
# fd to watch (the loop's own two, the broker's listener, each
# connection) as they come and go; a select() over them, dispatch_fd for
# each ready fd and dispatch when timeout_ms passes drive a publish and
# calls to the end. An idle loop leaves every watched fd quiet.
# unwatch_fds tells the host to drop them all, after which dispatch_fd
# dies with invalid_state; bad arguments die with invalid_argument.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use StageBus;

alarm 60;

my $loop = StageBus::Loop->new;
my %watched;
$loop->watch_fds(sub {
    my ($fd, $events) = @_;
    if ($events) { $watched{$fd} = $events } else { delete $watched{$fd} }
});
is(scalar keys %watched, 2, 'the loop\'s own fds are watched at once');

my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
is(scalar keys %watched, 3, '... and the broker\'s listener');
ok(!grep({ $_ & StageBus::Loop::FD_WRITE } values %watched), 'all for reading');

# The fds ready within $ms (undef: no limit), with what they are ready for.
sub ready {
    my ($ms) = @_;
    my ($rin, $win) = ('', '');
    for my $fd (keys %watched) {
        vec($rin, $fd, 1) = 1 if $watched{$fd} & StageBus::Loop::FD_READ;
        vec($win, $fd, 1) = 1 if $watched{$fd} & StageBus::Loop::FD_WRITE;
    }
    my $n = select(my $rout = $rin, my $wout = $win, undef, defined $ms ? $ms / 1000 : undef);
    return () if $n <= 0;
    my @ready;
    for my $fd (keys %watched) {
        my $events = (vec($rout, $fd, 1) ? StageBus::Loop::FD_READ : 0)
            | (vec($wout, $fd, 1) ? StageBus::Loop::FD_WRITE : 0);
        push @ready, [$fd, $events] if $events;
    }
    return @ready;
}

# The host loop: until $done, or 10 s.
my $dispatches = 0;
sub host_until {
    my ($done) = @_;
    my $deadline = time + 10;
    until ($done->()) {
        die "the host loop timed out\n" if time > $deadline;
        my $t = $loop->timeout_ms;
        $t = 1000 if $t < 0 || $t > 1000;
        my @ready = ready($t);
        $loop->dispatch unless @ready;
        $loop->dispatch_fd(@$_) for @ready;
        $dispatches++;
    }
}

my $svc    = StageBus::Client->new(loop => $loop, address => $broker->address);
my $caller = StageBus::Client->new(loop => $loop, address => $broker->address);
my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Svc',
    handlers => { echo => sub { my ($ctx) = @_; $ctx->req->return(args => $ctx->args) } },
);
my $published;
$stage->publish(client => $svc, session => 'Svc', on_done => sub { $published = !$_[0] });
host_until(sub { defined $published });
ok($published, 'published, driven fd by fd');
is(scalar keys %watched, 7, 'both connections, both ends, are watched');

my @replies;
for my $i (1 .. 5) {
    $caller->call(session => 'Svc', method => 'echo', args => { i => $i }, on_response => sub {
        my ($ctx) = @_;
        push @replies, $ctx->args->{i} if $ctx->rsp->is_final;
    });
}
host_until(sub { @replies == 5 });
is_deeply([sort @replies], [1 .. 5], 'five calls answered');
ok($dispatches > 0, "the host dispatched ($dispatches times)");

# Idle: nothing is ready, so the host would sleep.
host_until(sub { !ready(0) && $loop->timeout_ms != 0 });
is_deeply([ready(0)], [], 'an idle loop leaves every watched fd quiet');

$caller->close;
host_until(sub { keys %watched == 5 });
is(scalar keys %watched, 5, 'a closed connection\'s fds are dropped');

$loop->unwatch_fds;
is(scalar keys %watched, 0, 'unwatch_fds drops them all');
my $e = do { local $@; eval { $loop->dispatch_fd(0, StageBus::Loop::FD_READ) }; $@ };
ok(blessed($e) && $e->is('invalid_state'), 'dispatch_fd without watch_fds dies with invalid_state');

$loop->watch_fds(sub { my ($fd, $events) = @_; $watched{$fd} = $events if $events });
for my $bad ([-1, 1], ['x', 1], [0, 4], [0, 'read'], [undef, 1]) {
    my $e = do { local $@; eval { $loop->dispatch_fd(@$bad) }; $@ };
    ok(blessed($e) && $e->is('invalid_argument'),
        'dispatch_fd(' . join(', ', map { $_ // 'undef' } @$bad) . ') dies with invalid_argument');
}
$e = do { local $@; eval { $loop->watch_fds('x') }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'watch_fds needs a code ref');

# Back on the loop's own run methods, which work either way.
my $later;
$loop->timer(after_ms => 1, cb => sub { $later = 1 });
ok($loop->run_until(sub { $later }, timeout_ms => 5000), 'run_until works while the fds are watched');

# A watch replaced by another is not ended by its number; destroying the
# loop tells the watching callback to drop every fd.
{
    my $l = StageBus::Loop->new;
    my (%first, %second);
    my $one = $l->watch_fds(sub { $_[1] ? ($first{ $_[0] } = 1) : delete $first{ $_[0] } });
    my $two = $l->watch_fds(sub { $_[1] ? ($second{ $_[0] } = 1) : delete $second{ $_[0] } });
    ok(!%first && keys %second == 2, 'a second watch replaces the first, which drops its fds');
    $l->unwatch_fds($one);
    is(scalar keys %second, 2, "unwatch_fds of the first watch's number leaves the second's");
    $l->destroy;
    is(scalar keys %second, 0, 'destroying the loop tells the watch to drop every fd');
}

done_testing;
