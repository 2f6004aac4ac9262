#!/usr/bin/perl
# A Perl die inside any callback never unwinds through the library: in a
# handler serving a request it becomes the caller's error response
# (handler_failed and the message, or the code of a StageBus::Error),
# locally and across a broker; everywhere else it goes to the
# diagnostic hook. The loop goes on either way. Synchronous failures of
# the C API are thrown as StageBus::Error objects.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use StageBus;

alarm 60;

# An error as a one-line test name.
sub line { my $s = "$_[0]"; chomp $s; $s }

my @diag;
StageBus::set_diagnostic_hook(sub { push @diag, $_[0] });

my $loop = StageBus::Loop->new;
my $records0 = StageBus::_live_records();

my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Fragile',
    handlers => {
        boom      => sub { die "kaboom\n" },
        boom_obj  => sub { die StageBus::Error->new(code => 'no_such_method', message => 'not here') },
        boom_ref  => sub { die { not => 'a string' } },
        late_boom => sub { $_[0]->req->return(args => { ok => 1 }); die "after the return\n" },
        fine      => sub { $_[0]->req->return(args => { ok => 1 }) },
        relay     => sub {
            my ($ctx) = @_;
            # A response handler of a request made while serving relay
            # dies: relay's own request fails with the message.
            $ctx->req->data->{sub} = $ctx->stage->request(
                method    => 'fine',
                on_return => sub { die "the response handler failed\n" },
            );
        },
        on_cancel_dies => sub {
            $_[0]->req->on_cancel(sub { die "on_cancel died\n" });
            # Kept until it ends: unkept, it would end with 'unanswered'.
            $_[0]->req->data->{kept} = $_[0]->req->keep;
        },
    },
);

# Sends a request; returns what its caller got: [type, error] once done.
sub call {
    my ($target, $method) = @_;
    my $got;
    my $req = $target->request(
        method    => $method,
        on_return => sub { $got = ['return', undef, $_[0]->args] },
        on_error  => sub { $got = ['error', $_[0]->rsp->error] },
    );
    $loop->run_until(sub { $got }, timeout_ms => 5000) or return ['nothing'];
    return $got;
}

for my $where (qw(local remote)) {
    my ($target, @keep) = ($stage);
    if ($where eq 'remote') {
        my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
        my $client = StageBus::Client->new(loop => $loop, address => $broker->address);
        my ($ok, $remote);
        $stage->publish(client => $client, session => 'Fragile', on_done => sub { $ok = !$_[0] });
        $client->subscribe(session => 'Fragile', on_subscribed => sub { $remote = $_[1] });
        $loop->run_until(sub { $ok && $remote }, timeout_ms => 5000) or BAIL_OUT('remote set-up failed');
        ($target, @keep) = ($remote, $broker, $client);
    }
    my $got = call($target, 'boom');
    ok($got->[0] eq 'error' && $got->[1]->is('handler_failed') && $got->[1]->message eq 'kaboom',
        "$where: a die answers the request with handler_failed and the message")
        or diag explain $got;
    $got = call($target, 'boom_obj');
    ok($got->[0] eq 'error' && $got->[1]->is('no_such_method') && $got->[1]->message eq 'not here',
        "$where: a die with a StageBus::Error answers with its code and message");
    $got = call($target, 'boom_ref');
    ok($got->[0] eq 'error' && $got->[1]->is('handler_failed') && $got->[1]->message =~ /^HASH\(/,
        "$where: a die with a reference answers handler_failed");
    @diag = ();
    $got = call($target, 'late_boom');
    is($got->[0], 'return', "$where: a die after the return leaves the return in place");
    ok((grep { /handler 'late_boom' died with no open request to answer: after the return/ } @diag),
        "$where: ... and is reported to the diagnostic hook") or diag explain \@diag;
    $got = call($target, 'relay');
    ok($got->[0] eq 'error' && $got->[1]->is('handler_failed') && $got->[1]->message eq 'the response handler failed',
        "$where: a dying response handler fails the request its stage serves") or diag explain $got;
    $got = call($target, 'fine');
    is($got->[0], 'return', "$where: the loop goes on");
}

# Outside request handlers: the diagnostic hook.
@diag = ();
my $top_done;
my $top = $stage->request(method => 'fine', on_return => sub { $top_done = 1; die "top-level handler died\n" });
$loop->run_until(sub { $top_done }, timeout_ms => 5000);
$loop->run_for(5);
ok((grep { /died with no open request to answer: top-level handler died/ } @diag),
    'a dying top-level response handler is reported') or diag explain \@diag;

@diag = ();
my $fired;
$loop->timer(after_ms => 1, cb => sub { $fired = 1; die "timer died\n" });
$loop->run_until(sub { $fired }, timeout_ms => 5000);
ok((grep { /timer died: timer died/ } @diag), 'a dying timer is reported');

@diag = ();
my $cancel_req = $stage->request(method => 'on_cancel_dies', fallback => sub { });
$loop->run_for(5);
ok($cancel_req->cancel, 'cancelled a request whose on_cancel dies');
$loop->run_for(5);
ok((grep { /on_cancel died: on_cancel died/ } @diag), 'a dying on_cancel is reported') or diag explain \@diag;

@diag = ();
my $conn_cb;
my $bad = StageBus::Client->new(loop => $loop, address => 'tcp://127.0.0.1:1',
    on_connect => sub { $conn_cb = $_[0]; die "on_connect died\n" });
$loop->run_until(sub { $conn_cb }, timeout_ms => 5000);
ok(blessed($conn_cb) && $conn_cb->isa('StageBus::Error'), "a failed connect reports an error: " . line($conn_cb));
ok((grep { /on_connect died: on_connect died/ } @diag), 'a dying on_connect is reported');
undef $bad;

StageBus::set_diagnostic_hook(undef);

# ---- synchronous errors are StageBus::Error exceptions ----------------------

my $client = StageBus::Client->new(loop => $loop, address => 'tcp://127.0.0.1:1');
my $err = do { local $@; eval { $client->rescind(session => 'Nope', on_done => sub { }) }; $@ };
ok(blessed($err) && $err->isa('StageBus::Error'), 'rescind of a session not ours throws a StageBus::Error');
is($err->name, 'not_publisher', '... named not_publisher');
is($err->code, 10, '... numbered 10');
like("$err", qr/^stagebus: not_publisher \(10\): .+ at \Q${\__FILE__}\E line \d+\.\n\z/,
    "... and it stringifies with the caller's file and line: " . line($err));
undef $client;

$err = do { local $@; eval { StageBus::Broker->new(loop => $loop, listen => 'bogus://x') }; $@ };
ok(blessed($err) && $err->code == 9, "a bad listen address: " . line($err));

$err = do { local $@; eval { StageBus::Stage->new(loop => $loop, name => '') }; $@ };
ok(blessed($err) && $err->is('invalid_argument'), "an empty stage name: " . line($err));

# A call from a thread other than the loop's (the C API's
# SB_WRONG_THREAD) is thrown like every other status: named wrong_thread.
$err = do { local $@; eval { StageBus::_check(105, 'from another thread') }; $@ };
ok(blessed($err) && $err->is('wrong_thread') && $err->code == 105, "SB_WRONG_THREAD: " . line($err));

$err = do { local $@; eval { StageBus::Client->new(loop => $loop) }; $@ };
ok(blessed($err) && $err->is('invalid_argument') && $err->message =~ /'address' is required/,
    "a missing named argument: " . line($err));

$err = do { local $@; eval { $stage->request(method => 'fine', args => { "a\0b" => 'text' }) }; $@ };
ok(blessed($err) && $err->is('invalid_argument') && $err->message =~ /NUL/, "an args key with a NUL: " . line($err));

my $kept_ctx;
my $ctx_done;
my $probe = $stage->request(method => 'fine', on_return => sub { $kept_ctx = $_[0]; $ctx_done = 1 });
$loop->run_until(sub { $ctx_done }, timeout_ms => 5000);
$err = do { local $@; eval { $kept_ctx->args }; $@ };
ok(blessed($err) && $err->is('invalid_state'), "a context used after its handler returned: " . line($err));

undef $probe;
undef $top;
undef $cancel_req;
undef $kept_ctx;
undef $stage;
$loop->run_for(5);
is(StageBus::_live_records(), $records0, "every callback was released") or diag explain [values %StageBus::REG];

done_testing;
