#!/usr/bin/perl
# service.pl: publishes the stage "Greeter" on a broker, inside POE.
#
#   perl -I bindings/perl/lib examples/perl/service.pl tcp://127.0.0.1:7000
#
# Methods (the same as examples/c/service.c, so either caller works):
#   hello {name}   returns {greeting: "Hello, NAME!"}
#   count {n}      emits n times {i: 1..n}, then returns {total: n}
#   ask            emits "question" {question}, waits for the caller to
#                  recall "answer" {name} in the same request, then
#                  returns {reply}
#   slow           never answers; prints when the caller cancels it
#
# Prints "ready" once the broker accepted the session, a line per request
# served, and runs until SIGINT or SIGTERM (exit 0) or until the broker
# goes away (exit 1). stagebus runs inside POE's loop (StageBus::POE):
# no thread or loop of its own.
use strict;
use warnings;

use IO::Handle;
use POE;
use StageBus;
use StageBus::POE;

my $address = shift or die "usage: $0 BROKER-ADDRESS\n";
STDOUT->autoflush(1);

sub say_line { print "@_\n" }

my $loop = StageBus::Loop->new;
my $host = StageBus::POE->new(loop => $loop, alias => 'stagebus');
my ($client, $exit_code) = (undef, 0);

my $greeter = StageBus::Stage->new(
    loop        => $loop,
    name        => 'Greeter',
    recall_only => ['answer'],    # reached by a recall inside an `ask` only
    handlers    => {
        hello => sub {
            my ($ctx) = @_;
            my $name = $ctx->args->{name} // 'world';
            say_line("hello: greeting $name (request ${\ $ctx->req->id })");
            $ctx->req->return(args => { greeting => "Hello, $name!" });
        },
        count => sub {
            my ($ctx) = @_;
            my $req = $ctx->req;
            my $n = $ctx->args->{n} // 3;
            # A failure of our own making: the caller gets this code and text.
            die StageBus::Error->new(code => 'invalid_argument', message => 'n must be between 0 and 1000')
                if $n < 0 || $n > 1000;
            $req->emit(args => { i => $_ }) for 1 .. $n;
            $req->return(args => { total => $n });
            say_line("count: emitted $n times, returned");
        },
        ask => sub {
            my ($ctx) = @_;
            my $req = $ctx->req;
            $req->data->{asked} = 1;    # `answer` accepts only recalls of an ask
            $req->emit(type => 'question', args => { question => 'What is your name?' });
            say_line("ask: asked request ${\ $req->id } for a name");
        },
        answer => sub {
            my ($ctx) = @_;
            my $req = $ctx->req;
            $req->data->{asked}
                or die StageBus::Error->new(code => 'invalid_state', message => 'answer is a recall of ask');
            my $name = $ctx->args->{name} // 'stranger';
            say_line("ask: request ${\ $req->id } answered $name");
            $req->return(args => { reply => "Nice to meet you, $name." });
        },
        slow => sub {
            my ($ctx) = @_;
            my $id = $ctx->req->id;
            say_line("slow: holding request $id until it is cancelled");
            $ctx->req->on_cancel(sub { say_line("slow: on_cancel ran (request $id)") });
            # Kept (its data goes when it ends): a request its handler
            # neither answers nor keeps ends at once with 'unanswered'.
            $ctx->req->data->{kept} = $ctx->req->keep;
        },
    },
);

POE::Session->create(
    inline_states => {
        _start => sub {
            my $kernel = $_[KERNEL];
            $kernel->sig(INT  => 'signal');
            $kernel->sig(TERM => 'signal');
            $kernel->alias_set('service');
            $client = StageBus::Client->new(
                loop       => $loop,
                address    => $address,
                on_connect => sub {
                    my ($err, $connection) = @_;
                    return $kernel->call(service => quit => 1, "cannot connect: $err") if $err;
                    say_line("connected (connection $connection)");
                },
                on_disconnect => sub { $kernel->call(service => quit => 1, "lost the broker: $_[0]") },
            );
            $greeter->publish(client => $client, session => 'Greeter', on_done => sub {
                my ($err) = @_;
                return $kernel->call(service => quit => 1, "cannot publish: $err") if $err;
                say_line('ready');
            });
        },
        signal => sub {
            my ($kernel, $name) = @_[KERNEL, ARG0];
            say_line("stopping on signal $name");
            $kernel->sig_handled;
            $kernel->yield(quit => 0);
        },
        quit => sub {
            my ($kernel, $code, $why) = @_[KERNEL, ARG0, ARG1];
            if (defined $why) { chomp $why; print STDERR "service: $why\n" }
            $exit_code = $code;
            $kernel->sig('INT');
            $kernel->sig('TERM');
            $kernel->alias_remove('service');
            $host->shutdown;
        },
    },
);

POE::Kernel->run;
undef $client;
undef $greeter;
exit $exit_code;
