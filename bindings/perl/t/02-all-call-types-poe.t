#!/usr/bin/perl
# POE::Stage t/01_all_call_types.t (19 checks) under POE: with Something
# local, then behind a broker over TCP and over a Unix socket; all of it
# twice, POE watching the loop's one fd, then each of its fds.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More tests => 2 * (3 * 19 + 1);
use POE;
use StageBus;
use StageBus::POE;
use AllCallTypes;

alarm 60;

# Watching the loop's one fd, then each of its fds (fd_by_fd).
for my $fd_by_fd (0, 1) {
    my $loop = StageBus::Loop->new;
    my $host = StageBus::POE->new(loop => $loop, fd_by_fd => $fd_by_fd);
    my @modes = qw(local tcp unix);
    my $dialogue;

    POE::Session->create(
        inline_states => {
            _start => sub { $_[KERNEL]->yield('next'); $_[KERNEL]->delay(timeout => 30) },
            next   => sub {
                my $kernel = $_[KERNEL];
                undef $dialogue;
                my $mode = shift @modes;
                if (!defined $mode) {
                    $kernel->delay('timeout');
                    $host->shutdown;
                    return;
                }
                my $session = $_[SESSION]->ID;
                $dialogue = AllCallTypes::start(loop => $loop, mode => $mode,
                    on_done => sub { $kernel->post($session, 'next') });
            },
            timeout => sub { fail('the dialogues finished in time'); $host->shutdown },
        },
    );

    POE::Kernel->run;
    my $how = $fd_by_fd ? 'fd by fd' : 'one fd';
    ok(!@modes, "[$how] every mode ran, and POE::Kernel->run returned");
}
