#!/usr/bin/perl
# POE::Stage t/01_all_call_types.t (19 checks) under POE: with Something
# local, then behind a broker over TCP and over a Unix socket.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More tests => 3 * 19 + 1;
use POE;
use StageBus;
use StageBus::POE;
use AllCallTypes;

alarm 60;

my $loop = StageBus::Loop->new;
my $host = StageBus::POE->new(loop => $loop);
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
ok(!@modes, 'every mode ran, and POE::Kernel->run returned');
