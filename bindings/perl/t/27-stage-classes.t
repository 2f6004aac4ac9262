#!/usr/bin/perl
# StageBus::POE::Stage beyond the 19 checks: POE::Stage's handler
# naming (on_foo before foo; on_<role>_<type>; explicit on_<type> over
# the role), the synchronous init, code-ref response handlers called as
# methods, a callee's $req->cancel, and req_ scope data living exactly
# as long as its side of the request (SEMANTICS.md S5, S6, S18, S20,
# S24, S16).
use strict;
use warnings;

use Test::More;
use StageBus;
use StageBus::POE::Stage;

alarm 60;

my @log;

package Guard {
    sub new { my ($c, $name) = @_; bless { name => $name }, $c }
    sub DESTROY { push @log, "freed $_[0]{name}" }
}

package Door {
    use parent -norequire, 'StageBus::POE::Stage';

    sub on_init {
        my ($self, $args) = @_;
        push @log, "init $args->{colour}";
        $self->{colour} = $args->{colour};
    }

    # Candygram: landshark goes away, candygram is let in.
    sub knock {
        my ($self, $args) = @_;
        push @log, "knock $args->{who}";
        $self->req_scope->{guard} = Guard->new("door scope of $args->{who}");
        if ($args->{who} eq 'landshark') {
            $self->req->return(type => 'go_away', args => { who => $args->{who} });
        }
        else {
            $self->req->return(type => 'hello', args => { who => $args->{who} });
        }
    }

    sub on_which { $_[0]->req->return(args => { ran => 'on_which' }) }
    sub which    { $_[0]->req->return(args => { ran => 'which' }) }
    sub only_bare { $_[0]->req->return(args => { ran => 'only_bare' }) }
    sub refuse   { $_[0]->req->cancel(message => 'no visitors') }
}

package Visitor {
    use parent -norequire, 'StageBus::POE::Stage';

    sub on_run {
        my ($self, $args) = @_;
        my $door = $self->{door} = Door->new(colour => 'red');
        push @log, 'door made';
        my $scope = $self->req_scope;
        $scope->{guard} = Guard->new('visitor scope of run');
        $scope->{k1} = StageBus::Request->new(stage => $door, method => 'knock', role => 'knock',
            args => { who => 'landshark' });
        $scope->{k2} = StageBus::Request->new(stage => $door, method => 'knock', role => 'knock',
            args => { who => 'candygram' });
        $scope->{k3} = StageBus::Request->new(stage => $door, method => 'knock', role => 'knock',
            args => { who => 'neighbour' }, on_hello => 'explicit_hello');
        $scope->{w1} = StageBus::Request->new(stage => $door, method => 'which', on_return => 'ran');
        $scope->{w2} = StageBus::Request->new(stage => $door, method => 'only_bare', on_return => 'ran');
        $scope->{r}  = StageBus::Request->new(stage => $door, method => 'refuse',
            on_error => sub {
                my ($self, $args) = @_;
                push @log, 'refused: ' . $self->rsp->error->name . ' ' . $self->rsp->error->message
                    . ' (' . ref($self) . ')';
                $self->finish;
            });
        $scope->{r}->data->{guard} = Guard->new('visitor rsp scope of refuse');
    }

    sub on_knock_go_away { push @log, "$_[1]{who} goes away" }
    sub on_knock_hello   { push @log, "$_[1]{who} delivers candygram" }
    sub explicit_hello   { push @log, "$_[1]{who}: explicit beats role" }
    sub ran              { push @log, "ran $_[1]{ran}" }

    sub finish { $_[0]->req->return(args => { done => 1 }) }
}

my $loop = StageBus::Loop->new;
StageBus::POE::Stage->set_default_loop($loop);

is_deeply([Door->handler_names], [qw(knock on_which only_bare refuse which)],
    "a class's handlers are the methods it defines (not new, on_init, imported subs)");

my $visitor = Visitor->new;
my $done;
my $run = StageBus::Request->new(stage => $visitor, method => 'run', on_return => sub { $done = 1 });
$loop->run_until(sub { $done }, timeout_ms => 10000) or BAIL_OUT('run never returned: @log');
undef $run;
$loop->run_for(20);

my %at = map { ($log[$_] => $_) } 0 .. $#log;
is_deeply([@log[0, 1]], ['init red', 'door made'], 'on_init ran inside new, with its args');
is_deeply([grep { /^knock|goes away|delivers|explicit/ } @log],
    ['knock landshark', 'knock candygram', 'knock neighbour',
     'landshark goes away', 'candygram delivers candygram', 'neighbour: explicit beats role'],
    'candygram: FIFO, role handlers on_knock_<type>, and an explicit on_hello wins over the role');
ok(exists $at{'ran on_which'} && !exists $at{'ran which'}, 'method which runs on_which when the class has both');
ok(exists $at{'ran only_bare'}, 'method only_bare runs only_bare');
ok(exists $at{'refused: cancelled no visitors (Visitor)'},
    "a callee's \$req->cancel is a cancelled error; a code-ref handler is called as a method");
for my $who (qw(landshark candygram neighbour)) {
    ok(exists $at{"freed door scope of $who"}, "the door's req_ scope of $who was freed when its request ended");
}
ok($at{'freed visitor scope of run'} > $at{'ran only_bare'}, "the visitor's req_ scope of run lived until run ended");
ok(exists $at{'freed visitor rsp scope of refuse'}, 'the rsp_ scope data of refuse was freed with its request');
diag(explain(\@log)) unless Test::More->builder->is_passing;
done_testing;
