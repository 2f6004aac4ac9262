#!/usr/bin/perl
# Calls by name without a subscribe: call_sync returns the return's args
# or dies with the error that ended the call (no_such_session,
# no_such_method, the service's error, timeout, which the service sees
# as a cancel); inside a callback of its loop it is refused with
# invalid_state. call delivers every response to on_response.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use StageBus;

alarm 60;

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my $svc    = StageBus::Client->new(loop => $loop, address => $broker->address);
my $caller = StageBus::Client->new(loop => $loop, address => $broker->address);

my ($kept, $cancelled, $nested);
my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Svc',
    handlers => {
        echo   => sub { my ($ctx) = @_; $ctx->req->return(args => $ctx->args) },
        refuse => sub { $_[0]->req->fail(code => 'invalid_argument', message => 'no thanks') },
        count  => sub {
            my $req = $_[0]->req;
            $req->emit(type => 'tick', args => { i => $_ }) for 1 .. 2;
            $req->return(args => { count => 2 });
        },
        hang => sub {
            my ($ctx) = @_;
            $ctx->req->on_cancel(sub { $cancelled = 1 });
            $kept = $ctx->req->keep;
        },
        nested => sub {
            my ($ctx) = @_;
            $nested = do { local $@; eval { $caller->call_sync(session => 'Svc', method => 'echo') }; $@ };
            $ctx->req->return;
        },
    },
);
my $published;
$stage->publish(client => $svc, session => 'Svc', on_done => sub { $published = !$_[0] });
$loop->run_until(sub { defined $published }, timeout_ms => 10000);
ok($published, 'the service published');

my $reply = $caller->call_sync(session => 'Svc', method => 'echo',
    args => { text => 'hi', xs => [1, 2], m => { k => 'v' } }, timeout => 10);
is_deeply($reply, { text => 'hi', xs => [1, 2], m => { k => 'v' } }, 'call_sync returns the return\'s args');
is_deeply($caller->call_sync(session => 'Svc', method => 'count'), { count => 2 },
    'emits are passed over');

sub error_of {
    my (%a) = @_;
    local $@;
    eval { $caller->call_sync(%a); 1 } and return undef;
    return $@;
}
for my $case (
    [{ session => 'Nobody', method => 'echo', timeout => 10 }, 'no_such_session', qr/Nobody/],
    [{ session => 'Svc', method => 'nope', timeout => 10 }, 'no_such_method', qr/nope/],
    [{ session => 'Svc', method => 'refuse', timeout => 10 }, 'invalid_argument', qr/no thanks/],
    [{ session => 'Svc', method => 'hang', timeout => 0.1 }, 'timeout', qr/no final response/],
    [{ session => 'Svc', method => 'echo', timeout => 'soon' }, 'invalid_argument', qr/timeout/],
) {
    my ($args, $code, $message) = @$case;
    my $e = error_of(%$args);
    ok(blessed($e) && $e->is($code), "$args->{method} on $args->{session}: $code")
        or diag("got: " . ($e // 'no error'));
    like("$e", $message, '... saying why');
}
$loop->run_until(sub { $cancelled }, timeout_ms => 10000);
ok($cancelled, 'the timed-out call is cancelled at the service');
undef $kept;

$caller->call_sync(session => 'Svc', method => 'nested', timeout => 10);
ok(blessed($nested) && $nested->is('invalid_state'), 'call_sync inside a callback is invalid_state');
like("$nested", qr/inside a callback/, '... saying why');

my (@seen, $final);
$caller->call(session => 'Svc', method => 'count', on_response => sub {
    my ($ctx) = @_;
    push @seen, $ctx->rsp->type;
    $final = $ctx->rsp->error // 'ok' if $ctx->rsp->is_final;
});
$loop->run_until(sub { defined $final }, timeout_ms => 10000);
is_deeply(\@seen, [qw(tick tick return)], 'call delivers every response');
is($final, 'ok', '... the last one final');

undef $final;
$caller->call(session => 'Nobody', method => 'echo',
    on_response => sub { $final = $_[0]->rsp->error if $_[0]->rsp->is_final });
$loop->run_until(sub { defined $final }, timeout_ms => 10000);
ok(blessed($final) && $final->is('no_such_session'), 'call to nobody ends with no_such_session');

my $e = do { local $@; eval { $caller->call(session => 'Svc', method => 'echo', on_response => 'x') }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'a handler that is no code ref is refused');

done_testing;
