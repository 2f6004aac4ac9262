#!/usr/bin/perl
# Handles freed in any order: a full set (loop, broker, two clients, a
# published stage, a subscription, requests open locally and remotely, a
# kept served request, a pending timer) is dropped in several orders,
# the loop first (->destroy) among them. Nothing crashes, every callback
# and data record comes back through free_user, and using an object of a
# destroyed loop throws invalid_state. Then: objects left to global
# destruction, and a forked child dropping its copies of the parent's
# objects without disturbing the parent.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use List::Util qw(shuffle);
use POSIX ();
use StageBus;

alarm 90;

my $records0 = StageBus::_live_records();

# Builds the set; returns a hash of named objects (all in use).
sub build {
    my %o;
    my $loop = $o{loop} = StageBus::Loop->new;
    $o{broker} = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
    $o{pub} = StageBus::Client->new(loop => $loop, address => $o{broker}->address,
        on_disconnect => sub { }, on_session_gone => sub { });
    $o{sub} = StageBus::Client->new(loop => $loop, address => $o{broker}->address,
        on_session_gone => sub { });
    my ($kept, @slow);
    $o{stage} = StageBus::Stage->new(
        loop     => $loop,
        name     => 'Slow',
        handlers => {
            # Kept (moved to slow_kept below): unkept, it would end at
            # once with 'unanswered'.
            slow => sub {
                $_[0]->req->on_cancel(sub { });
                $_[0]->req->data->{x} = [1];
                push @slow, $_[0]->req->keep;
            },
            keep => sub { $kept = $_[0]->req->keep },
            echo => sub { $_[0]->req->return(args => $_[0]->args) },
        },
    );
    $o{stage}->data->{self} = 'data';
    my ($published, $remote);
    $o{stage}->publish(client => $o{pub}, session => 'Slow', on_done => sub { $published = 1 });
    $o{sub}->subscribe(session => 'Slow', on_subscribed => sub { $remote = $_[1] });
    $loop->run_until(sub { $published && $remote }, timeout_ms => 5000) or die "set-up failed\n";
    $o{remote} = $remote;
    $o{local_req} = $o{stage}->request(method => 'slow', on_return => sub { }, fallback => sub { });
    $o{local_req}->data->{mine} = 1;
    $o{remote_req} = $remote->request(method => 'slow', on_return => sub { });
    $o{keep_req} = $o{stage}->request(method => 'keep', on_return => sub { });
    $o{timer} = $loop->timer(after_ms => 60_000, cb => sub { });
    $loop->run_until(sub { $kept && @slow == 2 }, timeout_ms => 5000) or die "keep failed\n";
    $o{kept} = $kept;
    undef $kept;    # the handler's closure must not hold it (a cycle through the stage)
    $o{slow_kept} = [splice @slow];    # likewise; dropped last (it is in no order)
    $loop->run_for(20);
    return \%o;
}

my @names = qw(loop broker pub sub stage remote local_req remote_req keep_req kept);

sub drop_in_order {
    my ($o, @order) = @_;
    for my $name (@order) {
        if ($name eq 'loop') {
            $o->{loop}->destroy;
            # Using anything on it now is refused, not a crash.
            my $e = do { local $@; eval { $o->{loop}->dispatch }; $@ };
            die "dispatch after destroy: $e" unless blessed($e) && $e->is('invalid_state');
            if ($o->{pub}) {
                $e = do { local $@; eval { $o->{pub}->listing(on_listing => sub { }) }; $@ };
                die "listing after destroy: $e" unless blessed($e) && $e->is('invalid_state');
            }
        }
        delete $o->{$name};
    }
    %$o = ();
}

my %orders = (
    'loop first'      => [qw(loop broker pub sub stage remote local_req remote_req keep_req kept)],
    'loop first, requests after clients' => [qw(loop pub sub broker kept stage remote local_req remote_req keep_req)],
    'clients first'   => [qw(pub sub broker remote stage local_req remote_req kept keep_req loop)],
    'broker first'    => [qw(broker loop stage pub sub remote_req local_req kept keep_req remote)],
    'requests first'  => [qw(local_req remote_req keep_req kept remote stage sub pub broker loop)],
    'stage first'     => [qw(stage kept remote pub loop sub local_req broker remote_req keep_req)],
    'reverse of make' => [reverse @names],
);
srand($ENV{STAGEBUS_SEED} // 20240601);
$orders{"shuffled $_"} = [shuffle @names] for 1 .. 5;

for my $what (sort keys %orders) {
    my $o = build();
    ok(eval { drop_in_order($o, @{ $orders{$what} }); 1 }, "$what: dropped (@{ $orders{$what} })")
        or diag $@;
    is(StageBus::_live_records(), $records0, "$what: every callback and data record released")
        or diag explain [values %StageBus::REG];
}

# Dropping the loop object while others hold it only lets go of it.
{
    my $o = build();
    my $loop = delete $o->{loop};
    undef $loop;
    ok($o->{pub}->loop->alive, 'objects keep their loop alive');
    %$o = ();
    is(StageBus::_live_records(), $records0, 'released when the last object goes');
}

# Objects left to global destruction (in globals, referring to each
# other, with requests open): a clean exit, nothing on stderr.
{
    require File::Temp;
    my ($fh, $file) = File::Temp::tempfile('stagebus-gd-XXXXXX', SUFFIX => '.pl', TMPDIR => 1, UNLINK => 1);
    print {$fh} <<'PERL';
use strict; use warnings; use StageBus;
our ($loop, $broker, $client, $stage, %keep, $req, $remote, $done, $rreq);
$loop = StageBus::Loop->new;
$broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
$client = StageBus::Client->new(loop => $loop, address => $broker->address);
$stage = StageBus::Stage->new(loop => $loop, name => 'S',
    handlers => { m => sub { $_[0]->req->data->{loop} = $loop; push @{ $keep{served} }, $_[0]->req->keep } });
%keep = (stage => $stage, client => $client);
$req = $stage->request(method => 'm', on_return => sub { $keep{x} = $req });
$stage->publish(client => $client, session => 'S', on_done => sub {
    $client->subscribe(session => 'S', on_subscribed => sub { $remote = $_[1]; $done = 1 });
});
$loop->run_until(sub { $done }, timeout_ms => 5000) or die "no subscription\n";
$rreq = $remote->request(method => 'm', on_return => sub { });
$loop->timer(after_ms => 60_000, cb => sub { $keep{t} = $loop });
$loop->run_for(10);
print "ok\n";
PERL
    close $fh;
    (my $dir = $INC{'StageBus.pm'}) =~ s{/StageBus\.pm$}{};
    my $out = `"$^X" -I"$dir" "$file" 2>&1`;
    is($?, 0, 'a script leaving everything to global destruction exits 0');
    is($out, "ok\n", '... with nothing on stderr');
}

# A forked child drops its copies of the parent's objects (and exits
# normally, running DESTROY and END): the parent's loop, broker and
# connections are untouched.
{
    my $o = build();
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        %$o = ();
        exit 0;
    }
    waitpid($pid, 0);
    is($?, 0, 'the forked child exited 0 after dropping its copies');
    my $answered;
    my $req = $o->{remote}->request(method => 'echo', args => { n => 1 }, on_return => sub { $answered = $_[0]->args->{n} });
    ok($o->{loop}->run_until(sub { $answered }, timeout_ms => 5000), 'the parent still calls through the broker');
    my $listed;
    $o->{sub}->listing(on_listing => sub { $listed = $_[1] });
    ok($o->{loop}->run_until(sub { $listed }, timeout_ms => 5000), 'the parent lists through the broker after the fork');
    is(scalar(@{ $listed || [] }), 1, '... and its session is still published');
    undef $req;
    %$o = ();
    is(StageBus::_live_records(), $records0, 'released');
}

done_testing;
