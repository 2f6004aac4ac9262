#!/usr/bin/perl
# caller.pl: calls the Greeter service through a broker, inside AnyEvent.
#
#   perl -I bindings/perl/lib examples/perl/caller.pl tcp://127.0.0.1:7000
#
# The transcript: hello; count (three emits, then the return); ask, whose
# "question" emit is answered with a recall of "answer" in the same
# request; slow, cancelled after 50 ms (the service's on_cancel runs);
# a method the service does not have (no_such_method); count with a bad
# n (the service's own error). Exits 0 when every step went as expected,
# 1 otherwise (including when no Greeter is published).
use strict;
use warnings;

use IO::Handle;
use AnyEvent;
use StageBus;
use StageBus::AnyEvent;

my $address = shift or die "usage: $0 BROKER-ADDRESS\n";
STDOUT->autoflush(1);

my $loop = StageBus::Loop->new;
my $host = StageBus::AnyEvent->new(loop => $loop);
my $done = AnyEvent->condvar;
my $failures = 0;
my %keep;    # requests in flight: dropping one would cancel it

sub say_line { print "@_\n" }
sub bad { my $m = join "", @_; chomp $m; print STDERR "caller: $m\n"; $failures++ }

my $client = StageBus::Client->new(loop => $loop, address => $address,
    on_connect => sub { my ($err) = @_; if ($err) { bad("cannot connect: $err"); $done->send } });

# A response handler for what a step does not expect.
sub unexpected {
    my ($step) = @_;
    return sub {
        my $rsp = $_[0]->rsp;
        bad("$step: unexpected '${\ $rsp->type }' response" . ($rsp->error ? ": ${\ $rsp->error }" : ''));
        next_step();
    };
}

my ($greeter, @steps);

sub next_step {
    my $step = shift @steps;
    return $done->send unless $step;
    $step->();
}

@steps = (
    sub {
        $keep{hello} = $greeter->request(
            method    => 'hello',
            args      => { name => 'Perl' },
            on_return => sub { say_line("hello -> " . $_[0]->args->{greeting}); next_step() },
            fallback  => unexpected('hello'),
        );
    },
    sub {
        my @seen;
        $keep{count} = $greeter->request(
            method    => 'count',
            args      => { n => 3 },
            on_emit   => sub { my $i = $_[0]->args->{i}; push @seen, $i; say_line("count emit i=$i") },
            on_return => sub {
                my $total = $_[0]->args->{total};
                bad("count: emits @seen, total $total") unless "@seen" eq '1 2 3' && $total == 3;
                say_line("count -> total $total after " . scalar(@seen) . ' emits');
                next_step();
            },
            fallback => unexpected('count'),
        );
    },
    sub {
        $keep{ask} = $greeter->request(
            method      => 'ask',
            on_question => sub {
                my ($ctx) = @_;
                say_line("ask emit question: " . $ctx->args->{question});
                $ctx->rsp->recall(method => 'answer', args => { name => 'Ann' });
            },
            on_return => sub { say_line("ask -> " . $_[0]->args->{reply}); next_step() },
            fallback  => unexpected('ask'),
        );
    },
    sub {
        $keep{slow} = $greeter->request(method => 'slow', fallback => unexpected('slow'));
        $keep{slow_timer} = AnyEvent->timer(after => 0.05, cb => sub {
            my $was_open = $keep{slow}->cancel;
            bad('slow: the request was not open any more') unless $was_open;
            say_line('slow cancelled after 50 ms');
            # Give the cancel time to reach the service before going on.
            $keep{slow_timer} = AnyEvent->timer(after => 0.05, cb => \&next_step);
        });
    },
    sub {
        $keep{nope} = $greeter->request(
            method    => 'nope',
            on_error  => sub {
                my $e = $_[0]->rsp->error;
                bad("nope: got $e") unless $e->is('no_such_method');
                say_line('nope -> error ' . $e->name . ': ' . $e->message);
                next_step();
            },
            fallback => unexpected('nope'),
        );
    },
    sub {
        $keep{bad_count} = $greeter->request(
            method   => 'count',
            args     => { n => -1 },
            on_error => sub {
                my $e = $_[0]->rsp->error;
                bad("count -1: got $e") unless $e->is('invalid_argument');
                say_line('count -1 -> error ' . $e->name . ': ' . $e->message);
                next_step();
            },
            fallback => unexpected('count -1'),
        );
    },
);

$client->subscribe(session => 'Greeter', on_subscribed => sub {
    my ($err, $remote) = @_;
    if ($err) {
        bad("cannot subscribe to Greeter: $err");
        return $done->send;
    }
    say_line('subscribed to Greeter');
    $greeter = $remote;
    next_step();
});

my $timeout = AnyEvent->timer(after => 30, cb => sub { bad('timed out'); $done->send });
$done->recv;
%keep = ();
undef $greeter;
say_line($failures ? "failed ($failures)" : 'done');
exit($failures ? 1 : 0);
