#!/usr/bin/perl
# broker.pl: a stagebus broker, driven by the plain StageBus loop.
#
#   perl -I bindings/perl/lib examples/perl/broker.pl tcp://127.0.0.1:0 [unix:/tmp/bus.sock ...]
#
# Prints "listening on ADDRESS" (with the real port) for each address,
# then serves until SIGINT or SIGTERM: Perl's signal handlers run while
# $loop->run waits, and stop the loop.
use strict;
use warnings;

use IO::Handle;
use StageBus;

@ARGV or die "usage: $0 ADDRESS...   (e.g. tcp://127.0.0.1:0)\n";
STDOUT->autoflush(1);

my $loop   = StageBus::Loop->new;
my $broker = eval { StageBus::Broker->new(loop => $loop, listen => [@ARGV]) }
    or die "broker: cannot listen: $@";
print "listening on $_\n" for $broker->addresses;

my $signal;
$SIG{$_} = do { my $name = $_; sub { $signal = $name; $loop->stop } } for qw(INT TERM);

$loop->run;
print "stopping on signal $signal\n";
undef $broker;    # closes every connection (and removes a unix socket file)
exit 0;
