#!/usr/bin/perl
# The same dialogue as 02 (POE::Stage t/01_all_call_types.t, 19 checks
# per mode) under AnyEvent, with whatever backend AnyEvent picks (set
# PERL_ANYEVENT_MODEL to choose one; tests/perl.rs also runs it with the
# pure-Perl backend). An AnyEvent timer of our own keeps ticking while
# stagebus runs, proving it does not hold the loop. All of it twice: AnyEvent
# watching the loop's one fd, then each of its fds (fd_by_fd => 1).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More tests => 2 * (3 * 19 + 2) + 1;
use AnyEvent;
use StageBus;
use StageBus::AnyEvent;
use AllCallTypes;

alarm 60;

# Watching the loop's one fd, then each of its fds (fd_by_fd).
for my $fd_by_fd (0, 1) {
    my $how = $fd_by_fd ? 'fd by fd' : 'one fd';
    my $loop = StageBus::Loop->new;
    my $host = StageBus::AnyEvent->new(loop => $loop, fd_by_fd => $fd_by_fd);
    my $ticks = 0;
    my $ticker = AnyEvent->timer(after => 0.001, interval => 0.001, cb => sub { $ticks++ });

    for my $mode (qw(local tcp unix)) {
        my $cv = AnyEvent->condvar;
        my $timeout = AnyEvent->timer(after => 20, cb => sub { fail("[$mode, $how] finished in time"); $cv->send });
        my $dialogue = AllCallTypes::start(loop => $loop, mode => $mode, on_done => sub { $cv->send });
        $cv->recv;
    }
    ok($ticks > 0, "[$how] AnyEvent's own timer kept ticking ($ticks ticks, backend " . AnyEvent::detect() . ')');
    undef $host;
    if ($fd_by_fd) {
        my $e = do { local $@; eval { $loop->dispatch_fd(0, StageBus::Loop::FD_READ) }; $@ };
        ok(ref $e && $e->is('invalid_state'), "[$how] dropping the host stops watching the loop's fds");
    }
    my $cv = AnyEvent->condvar;
    my $t = AnyEvent->timer(after => 0.01, cb => sub { $cv->send });
    $cv->recv;
    ok(1, "[$how] dropping the host stops watching; AnyEvent goes on");
}
