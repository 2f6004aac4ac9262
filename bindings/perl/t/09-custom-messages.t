#!/usr/bin/perl
# Messages of application-defined kinds (StageBus::Client's
# on_unknown_message and send_custom), what send_custom refuses, and a
# stage's name as a handler sees it.
use strict;
use warnings;
use utf8;

use Test::More;
use Scalar::Util qw(blessed weaken);
use StageBus;

alarm 60;

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
my $connected;
my $client = StageBus::Client->new(loop => $loop, address => $broker->address,
    on_connect => sub { $connected = !$_[0] });
$loop->run_until(sub { $connected }, timeout_ms => 5000) or BAIL_OUT('no connection');

sub error_of (&) {
    my ($code) = @_;
    local $@;
    return eval { $code->(); 1 } ? undef : $@;
}

# The broker's answer reaches the handler: kind 'result', the id sent,
# the broker's text; the largest id and a bytes payload too.
my @got;
{
    package Guard;
    sub new { bless {}, shift }
}
my $watch;
{
    # Only the handler holds the guard.
    my $guard = Guard->new;
    $watch = $guard;
    weaken($watch);
    $client->on_unknown_message(sub { my $keep = $guard; push @got, [@_] });
}
$client->send_custom(kind => 'frob', id => 7, payload => "a\0b");
$client->send_custom(kind => 'fröb', id => '18446744073709551615', payload => StageBus::bytes("\xff\0"));
$client->send_custom(kind => 'frob', id => 0);
$loop->run_until(sub { @got == 3 }, timeout_ms => 5000);
is_deeply(\@got, [
    ['result', 7, "protocol: Unknown message type 'frob'"],
    ['result', 18446744073709551615, "protocol: Unknown message type 'fr\xc3\xb6b'"],
    ['result', 0, "protocol: Unknown message type 'frob'"],
], 'send_custom: the answers arrive as (result, id, the broker\'s text as octets)');

# Replacing the handler releases the old one.
my @second;
ok($watch, 'the first handler is alive while registered');
$client->on_unknown_message(sub { push @second, [@_] });
$loop->run_for(1);
ok(!$watch, 'replacing the handler releases the first one');
$client->send_custom(kind => 'again', id => 8);
$loop->run_until(sub { @second == 1 }, timeout_ms => 5000);
is(scalar @got, 3, 'only the new handler hears later answers');
is($second[0][1], 8, '... with its id');

# A handler that dies is reported, and the connection carries on.
my @diag;
StageBus::set_diagnostic_hook(sub { push @diag, $_[0] });
$client->on_unknown_message(sub { die "boom\n" });
$client->send_custom(kind => 'frob', id => 9);
$loop->run_until(sub { @diag }, timeout_ms => 5000);
like($diag[0], qr/on_unknown_message died: boom/, 'a dying handler goes to the diagnostic hook');
StageBus::set_diagnostic_hook(undef);
my $listed;
$client->listing(on_listing => sub { $listed = [@_] });
$loop->run_until(sub { $listed }, timeout_ms => 5000);
ok($listed && !$listed->[0], '... and the connection carries on');

# Refused at once.
for my $bad (
    [[kind => 'k', id => -1],                        qr/integer from 0 to 2\*\*64-1/, 'a negative id'],
    [[kind => 'k', id => '18446744073709551616'],    qr/integer from 0 to 2\*\*64-1/, 'an id above 2**64-1'],
    [[kind => 'k', id => 1.5],                       qr/integer from 0 to 2\*\*64-1/, 'a fractional id'],
    [[kind => 'k', id => 1, payload => "\x{263a}"],  qr/wide character/,             'a wide character in the payload'],
    [[kind => "a\0b", id => 1],                      qr/NUL/,                        'a kind holding a NUL'],
    [[id => 1],                                      qr/'kind' is required/,         'no kind'],
    )
{
    my ($args, $re, $what) = @$bad;
    my $e = error_of { $client->send_custom(@$args) };
    ok(blessed($e) && $e->is('invalid_argument') && $e->message =~ $re, "refused: $what")
        or diag(defined $e ? "$e" : 'no error');
}
my $e = error_of { $client->on_unknown_message('not code') };
ok(blessed($e) && $e->is('invalid_argument'), 'on_unknown_message needs a code ref');

$client->close;
$e = error_of { $client->send_custom(kind => 'frob', id => 1) };
ok(blessed($e) && $e->is('broker_gone'), 'send_custom after close: broker_gone') or diag("$e");

# A stage's name, also as a handler sees it ($ctx->stage, borrowed).
my $seen_name;
my $stage = StageBus::Stage->new(loop => $loop, name => 'Ünï stage ☃', handlers => {
    ask => sub { my ($ctx) = @_; $seen_name = $ctx->stage->name; $ctx->req->return },
});
is($stage->name, 'Ünï stage ☃', 'the stage knows its name');
my $done;
my $req = $stage->request(method => 'ask', on_return => sub { $done = 1 });
$loop->run_until(sub { $done }, timeout_ms => 5000);
is($seen_name, 'Ünï stage ☃', 'the borrowed stage in a handler has the same name (sb_stage_name)');

undef $req;
undef $stage;
undef $client;
undef $broker;
undef $loop;
done_testing;
