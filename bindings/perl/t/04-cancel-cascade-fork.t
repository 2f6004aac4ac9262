#!/usr/bin/perl
# Cancel cascades across two Perl processes (SEMANTICS.md S-scenarios,
# DESIGN guarantee 2). The parent runs the broker and the stage Leaf; a
# forked child publishes Middle, whose methods call Leaf:
#
#   parent --relay--> Middle (child) --wait--> Leaf (parent)
#
# `relay` makes its request to Leaf inside the handler (implicitly a
# child of relay); `relay_later` makes it from a timer with an explicit
# parent (a kept reference to the served request). Cancelling, dropping
# or timing out the parent's top request must cancel relay in the child
# (its on_cancel runs there and reports through a pipe) and, through
# it, the request to Leaf (Leaf's on_cancel runs here). No response of
# a cancelled request reaches the caller.
use strict;
use warnings;

use Test::More;
use IO::Handle;
use POSIX ();
use Time::HiRes ();
use StageBus;

alarm 60;

pipe(my $to_child_r, my $to_child_w) or die "pipe: $!";
pipe(my $from_child_r, my $from_child_w) or die "pipe: $!";
$to_child_w->autoflush(1);
$from_child_w->autoflush(1);

# Fork before any stagebus object exists: the child makes its own loop.
my $pid = fork // die "fork: $!";
if (!$pid) {
    close $to_child_w;
    close $from_child_r;
    my $rc = eval { child($to_child_r, $from_child_w) } // do { print STDERR "child: $@"; 1 };
    POSIX::_exit($rc);
}
close $to_child_r;
close $from_child_w;
$from_child_r->blocking(0);

# ---- the child: Middle ------------------------------------------------------

sub child {
    my ($in, $out) = @_;
    my $address = <$in>;
    chomp $address;
    my $say = sub { print {$out} "@_\n" };
    my $loop = StageBus::Loop->new;
    my $gone = 0;
    my $client = StageBus::Client->new(loop => $loop, address => $address,
        on_disconnect => sub { $gone = 1 });
    my $leaf;
    my $middle = StageBus::Stage->new(
        loop     => $loop,
        name     => 'Middle',
        handlers => {
            relay => sub {
                my ($ctx) = @_;
                my $req = $ctx->req;
                my $via = $ctx->args->{via};
                $req->on_cancel(sub { $say->("cancelled $via") });
                # Made while serving relay: relay's child.
                $req->data->{sub} = StageBus::Request->new(
                    to        => $leaf,
                    method    => 'wait',
                    args      => { via => $via },
                    fallback  => sub { $say->("leaf answered $via " . $_[0]->rsp->type) },
                );
            },
            relay_later => sub {
                my ($ctx) = @_;
                my $kept = $ctx->req->keep;
                my $via = $ctx->args->{via};
                $kept->on_cancel(sub { $say->("cancelled $via") });
                $loop->timer(after_ms => 10, cb => sub {
                    # Outside every handler: the parent is explicit.
                    $kept->data->{sub} = StageBus::Request->new(
                        to       => $leaf,
                        method   => 'wait',
                        args     => { via => $via },
                        parent   => $kept,
                        fallback => sub { $say->("leaf answered $via " . $_[0]->rsp->type) },
                    );
                    undef $kept;
                });
            },
        },
    );
    my ($published, $err);
    $middle->publish(client => $client, session => 'Middle', on_done => sub { $err = $_[0]; $published = 1 });
    $client->subscribe(session => 'Leaf', on_subscribed => sub { ($err, $leaf) = ($err || $_[0], $_[1]) });
    $loop->run_until(sub { $published && ($leaf || $err) }, timeout_ms => 20_000) or die "not ready in time\n";
    die "set-up failed: $err\n" if $err;
    $say->('ready');
    # Until the parent closes the broker.
    $loop->run_until(sub { $gone }, timeout_ms => 40_000);
    $say->('bye');
    return $gone ? 0 : 2;
}

# ---- the parent: broker, Leaf, caller ----------------------------------------

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my $client = StageBus::Client->new(loop => $loop, address => $broker->address);
my (%waiting, %leaf_cancelled, @lines, $buf);
$buf = '';

my $leaf = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Leaf',
    handlers => {
        wait => sub {
            my ($ctx) = @_;
            my $via = $ctx->args->{via};
            $waiting{$via}++;
            $ctx->req->on_cancel(sub { $leaf_cancelled{$via}++ });
            # Kept until it ends (its data goes then): a request neither
            # answered nor kept ends at once with 'unanswered'.
            $ctx->req->data->{kept} = $ctx->req->keep;
        },
    },
);

sub read_child {
    while (1) {
        my $n = sysread($from_child_r, my $chunk, 4096);
        last unless $n;
        $buf .= $chunk;
    }
    push @lines, $1 while $buf =~ s/^(.*)\n//;
}

# Runs the loop in slices until $cond holds (the child's pipe is read in
# between); false after $ms.
sub wait_for {
    my ($cond, $ms) = @_;
    my $deadline = Time::HiRes::time() + ($ms // 10_000) / 1000;
    while (Time::HiRes::time() < $deadline) {
        read_child();
        return 1 if $cond->();
        $loop->run_for(5);
    }
    read_child();
    return !!$cond->();
}

sub seen { my ($line) = @_; scalar grep { $_ eq $line } @lines }

my $published;
$leaf->publish(client => $client, session => 'Leaf', on_done => sub { $published = !$_[0] });
ok(wait_for(sub { $published }), 'Leaf published');
print {$to_child_w} $broker->address, "\n";
ok(wait_for(sub { seen('ready') }, 20_000), 'the child published Middle and subscribed Leaf')
    or diag("child said: @lines");

my $middle;
$client->subscribe(session => 'Middle', on_subscribed => sub { $middle = $_[1] });
ok(wait_for(sub { $middle }), 'subscribed to Middle');

my @answers;
my $answer = sub { my ($ctx) = @_; push @answers, $ctx->rsp->type };

for my $case (
    [relay       => 'cancel'],
    [relay_later => 'cancel'],
    [relay       => 'drop'],
    [relay       => 'timeout'],
    )
{
    my ($method, $how) = @$case;
    my $via = "$method-$how";
    my $top = $middle->request(
        method   => $method,
        args     => { via => $via },
        fallback => $answer,
        ($how eq 'timeout' ? (timeout_ms => 300, on_error => sub { push @answers, 'error:' . $_[0]->rsp->error->name }) : ()),
    );
    ok(wait_for(sub { $waiting{$via} }), "$via: the request reached Leaf through the child");
    if ($how eq 'cancel') {
        ok($top->cancel, "$via: cancel reports the request was open");
    }
    elsif ($how eq 'drop') {
        undef $top;
        pass("$via: the request object was dropped");
    }
    else {
        ok(wait_for(sub { !$top->is_open }, 5000), "$via: the request timed out");
    }
    # A timeout travels with the request (issue 12: deadlines): Middle's
    # request to Leaf inherits it and may time out in the child just
    # before the caller's cancel arrives there. Either way both ends hear
    # that the transaction is over.
    my $middle_ended = $how eq 'timeout'
        ? sub { seen("cancelled $via") || seen("leaf answered $via error") }
        : sub { seen("cancelled $via") };
    ok(wait_for(sub { $leaf_cancelled{$via} && $middle_ended->() }),
        "$via: Middle's on_cancel ran in the child (or its Leaf request timed out there), Leaf's here")
        or diag("child said: @lines; leaf cancelled: @{[ %leaf_cancelled ]}");
    ok(!$top || !$top->is_open, "$via: the request is closed");
    $loop->run_for(30);
    read_child();
    is_deeply(\@answers, $how eq 'timeout' ? ['error:timeout'] : [], "$via: no response reached the caller after the cancel");
    is($leaf_cancelled{$via}, 1, "$via: Leaf's on_cancel ran once");
    @answers = ();
}
ok(!grep(/^leaf answered (?!relay-timeout error$)/, @lines), 'no Leaf answer reached Middle (but an inherited timeout)');

# Closing the broker disconnects the child, which exits.
undef $middle;
undef $client;
$broker->close;
$loop->run_for(20);
my $status;
my $deadline = time + 20;
while (time < $deadline) {
    last if waitpid($pid, POSIX::WNOHANG()) == $pid && defined($status = $?);
    Time::HiRes::sleep(0.01);
}
if (!defined $status) {
    kill 'KILL', $pid;
    waitpid($pid, 0);
}
is($status, 0, 'the child saw the broker go and exited 0');
read_child();
ok(seen('bye'), 'the child said bye');

done_testing;
