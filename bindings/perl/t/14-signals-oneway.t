#!/usr/bin/perl
# Signals and one-way requests (issue 14): one emitter and 100 listeners
# with exact, prefix and wildcard matches each get exactly the matching
# signals, in order, with the session and signal names and the args; a
# removed match gets nothing more; only the publisher emits. A one-way
# request runs at the callee, which sees expects_answer false; its answer
# is dropped and counted; the broker keeps no route.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use StageBus;

alarm 120;

my $loop    = StageBus::Loop->new;
my $broker  = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my $emitter = StageBus::Client->new(loop => $loop, address => $broker->address);

my @posted;
my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Src',
    handlers => {
        work => sub {
            my ($ctx) = @_;
            push @posted, [$ctx->args->{n}, $ctx->req->expects_answer];
            $ctx->req->return(args => { ignored => 1 });
        },
    },
);
my $other = StageBus::Stage->new(loop => $loop, name => 'Other', handlers => { work => sub { } });
my $published = 0;
$stage->publish(client => $emitter, session => 'Src', on_done => sub { $published++ unless $_[0] });
$other->publish(client => $emitter, session => 'Other', on_done => sub { $published++ unless $_[0] });
$loop->run_until(sub { $published == 2 }, timeout_ms => 10000);

sub glob_match {
    my ($p, $name) = @_;
    return 1 if $p eq '*';
    return index($name, substr($p, 0, -1)) == 0 if $p =~ /\*\z/;
    return $p eq $name;
}

my @patterns = (['Src', 'tick'], ['*', 'tick'], ['Sr*', '*'], ['Src', 't*'], ['*', '*']);
my (@clients, @got, @confirmed);
for my $i (0 .. 99) {
    my ($s, $g) = @{ $patterns[$i % @patterns] };
    my $c = StageBus::Client->new(loop => $loop, address => $broker->address);
    push @clients, $c;
    my $list = [];
    push @got, $list;
    $c->add_match(
        session   => $s,
        signal    => $g,
        on_signal => sub { my ($session, $signal, $args) = @_; push @$list, "$session/$signal/$args->{n}" },
        on_done   => sub { push @confirmed, $_[0] },
    );
}
$loop->run_until(sub { @confirmed == 100 }, timeout_ms => 30000);
is(scalar(grep { defined } @confirmed), 0, '100 matches confirmed');

my @emitted;
for my $n (0 .. 59) {
    my ($s, $g) = $n % 3 == 0 ? ('Src', 'tick') : $n % 3 == 1 ? ('Src', 'tock') : ('Other', 'tick');
    $emitter->emit_signal(session => $s, signal => $g, args => { n => $n });
    push @emitted, [$s, $g, $n];
}
my @want = map {
    my ($s, $g) = @{ $patterns[$_ % @patterns] };
    [map { "$_->[0]/$_->[1]/$_->[2]" } grep { glob_match($s, $_->[0]) && glob_match($g, $_->[1]) } @emitted]
} 0 .. 99;
$loop->run_until(sub { !grep { @{ $got[$_] } != @{ $want[$_] } } 0 .. 99 }, timeout_ms => 30000);
is_deeply(\@got, \@want, 'every listener got exactly its signals, in order');

my $e = do { local $@; eval { $clients[0]->emit_signal(session => 'Src', signal => 'tick') }; $@ };
ok(blessed($e) && $e->is('not_publisher'), 'only the publisher emits');
$e = do { local $@; eval { $clients[0]->add_match(session => 'a*b', signal => '*', on_signal => sub { }) }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'a bad pattern is refused');

# A removed match gets nothing more.
my @mine;
my $ok;
my $id = $clients[1]->add_match(session => 'Src', signal => 'only', on_signal => sub { push @mine, $_[2]{n} },
    on_done => sub { $ok = !$_[0] });
$loop->run_until(sub { $ok }, timeout_ms => 10000);
$emitter->emit_signal(session => 'Src', signal => 'only', args => { n => 1 });
$loop->run_until(sub { @mine == 1 }, timeout_ms => 10000);
my $removed;
$clients[1]->remove_match(id => $id, on_done => sub { $removed = !$_[0] });
$loop->run_until(sub { $removed }, timeout_ms => 10000);
$emitter->emit_signal(session => 'Src', signal => 'only', args => { n => 2 });
my $listed;
$clients[1]->listing(on_listing => sub { $listed = 1 });
$loop->run_until(sub { $listed }, timeout_ms => 10000);
is_deeply(\@mine, [1], 'a removed match gets nothing more');

# One-way.
my $remote;
$clients[2]->subscribe(session => 'Src', on_subscribed => sub { $remote = $_[1] });
$loop->run_until(sub { $remote }, timeout_ms => 10000);
$remote->post(method => 'work', args => { n => 7 });
$loop->run_until(sub { @posted && $emitter->dropped_answers == 1 }, timeout_ms => 10000);
is_deeply(\@posted, [[7, 0]], 'the one-way request ran and expects no answer');
is($broker->pending_calls, 0, 'no route is kept');
$e = do { local $@; eval { $remote->post(method => '') }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'a post without a method is refused');

undef $remote;
done_testing;
