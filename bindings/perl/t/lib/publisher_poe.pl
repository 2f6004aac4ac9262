#!/usr/bin/perl
# A POE program whose ordinary session 'calc' is published as 'Calc'
# (StageBus::POE::Publish), for the tests that call it from another
# process (t/22 from Perl, t/25 from C).
#
#   publisher_poe.pl ADDRESS      connects to a broker there
#   publisher_poe.pl --broker     hosts the broker too (prints "address ADDR")
#
# Prints "ready" once published; exits 0 after the event 'quit' (or on
# SIGTERM). Events (the methods):
#   add(a, b)          returns a + b (its return value)
#   concat({x, y})     named args: returns { joined => "x-y" }
#   count(n)           emits 'tick' n times (i = 1..n), each from a POE
#                      delay of the session, then returns { total => n }
#   boom(msg)          dies with msg
#   quit               answers, then the program ends
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../lib";

use POE;
use StageBus;
use StageBus::POE;
use StageBus::POE::Publish;

$| = 1;
my $arg = shift // die "usage: $0 ADDRESS | --broker\n";

my $loop = StageBus::Loop->new;
my $host = StageBus::POE->new(loop => $loop);
my $broker;
my $address = $arg;
if ($arg eq '--broker') {
    $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
    $address = $broker->address;
    print "address $address\n";
}
my $client = StageBus::Client->new(loop => $loop, address => $address);

POE::Session->create(
    inline_states => {
        _start => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            $kernel->alias_set('calc');
            $kernel->sig(TERM => 'quit_now');
            $heap->{pub} = StageBus::POE::Publish->new(
                client       => $client,
                name         => 'Calc',
                events       => [qw(add concat count boom quit)],
                return_event => 'published',
            );
        },
        published => sub {
            my $r = $_[ARG0];
            die "publish: $r->{error}\n" unless $r->{success};
            print "ready\n";
        },
        add    => sub { my ($a, $b) = @_[ARG0, ARG1]; return $a + $b },
        concat => sub { my $h = $_[ARG0]; $_[-1]->return(args => { joined => "$h->{x}-$h->{y}" }); return },
        count  => sub {
            my ($kernel, $heap, $n, $req) = @_[KERNEL, HEAP, ARG0, $#_];
            $heap->{counting}{ $req->id } = [$req, 0, $n];
            $kernel->delay_add(tick => 0.01, $req->id);
            return;
        },
        tick => sub {
            my ($kernel, $heap, $id) = @_[KERNEL, HEAP, ARG0];
            my $c = $heap->{counting}{$id} or return;
            my ($req, $i, $n) = @$c;
            if ($i < $n) {
                $c->[1] = ++$i;
                $req->emit(type => 'tick', args => { i => $i });
                $kernel->delay_add(tick => 0.01, $id);
                return;
            }
            delete $heap->{counting}{$id};
            $req->return(args => { total => $n });
        },
        boom => sub { die "$_[ARG0]\n" },
        quit => sub {
            my ($kernel, $req) = @_[KERNEL, $#_];
            $req->return(args => { bye => 1 });
            $kernel->yield('quit_now');
        },
        quit_now => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            $kernel->sig_handled if $_[ARG0] && $_[ARG0] eq 'TERM';
            $kernel->sig('TERM');
            $kernel->alias_remove('calc');
            $kernel->delay('tick');
            delete $heap->{counting};
            # Let the answer leave before the loop stops.
            $client->close_gracefully(on_done => sub { $host->shutdown });
        },
    },
);

POE::Kernel->run;
print "stopped\n";
exit 0;
