#!/usr/bin/perl
# 50,000 local requests (100,000 under STAGEBUS_SOAK), each with args,
# a response handler, a data slot on both sides, and every tenth one an
# emit/recall dialogue, keep memory stable: RSS from /proc/self/statm
# after a warm-up and after the run differ by less than a small margin,
# and every callback and data record handed to the library was released
# through free_user.
use strict;
use warnings;

use Test::More;
use Time::HiRes ();
use StageBus;

plan skip_all => 'needs /proc/self/statm' unless -r '/proc/self/statm';
# A bound against hangs only (the machine may be loaded; nothing here
# measures speed): 120k requests take about 100 s on an idle 2-core VM.
alarm 900;

# The test command runs 50,000 after 10,000 (a leak of 40 bytes per
# request fails it); STAGEBUS_SOAK runs the full 100,000 after 20,000
# (20 bytes per request). The record counts below are exact either way.
my $SOAK   = $ENV{STAGEBUS_SOAK};
my $TOTAL  = $ENV{STAGEBUS_LEAK_REQUESTS} || ($SOAK ? 100_000 : 50_000);
my $BATCH  = 1000;
my $WARMUP = $ENV{STAGEBUS_LEAK_WARMUP} || ($SOAK ? 20_000 : 10_000);

sub rss_kb {
    open my $fh, '<', '/proc/self/statm' or die "statm: $!";
    my (undef, $resident) = split ' ', scalar <$fh>;
    return $resident * (POSIX::sysconf(POSIX::_SC_PAGESIZE()) / 1024);
}
use POSIX ();

my $loop  = StageBus::Loop->new;
my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Echo',
    handlers => {
        echo => sub {
            my ($ctx) = @_;
            my $req = $ctx->req;
            $req->data->{seen} = $ctx->args->{n};
            $req->return(args => { n => $ctx->args->{n}, list => $ctx->args->{list} });
        },
        ask => sub {
            my ($ctx) = @_;
            $ctx->req->data->{n} = $ctx->args->{n};
            $ctx->req->emit(type => 'question', args => { q => 'name?' });
        },
        answer => sub {
            my ($ctx) = @_;
            $ctx->req->return(args => { n => $ctx->req->data->{n}, name => $ctx->args->{name} });
        },
    },
);

my $records0 = StageBus::_live_records();
my ($done, $sum) = (0, 0);

sub batch {
    my ($from, $n) = @_;
    my @reqs;
    $done = 0;
    for my $i ($from .. $from + $n - 1) {
        my $req;
        if ($i % 10 == 0) {
            $req = $stage->request(
                method      => 'ask',
                args        => { n => $i },
                on_question => sub { $_[0]->rsp->recall(method => 'answer', args => { name => "n$i" }) },
                on_return   => sub { $sum += $_[0]->args->{n}; $done++ },
            );
        }
        else {
            $req = $stage->request(
                method    => 'echo',
                args      => { n => $i, list => [1, 'two', { three => 3.5 }], blob => StageBus::bytes("\0\xff") },
                on_return => sub { $sum += $_[0]->args->{n}; $done++ },
            );
        }
        $req->data->{i} = $i;
        push @reqs, $req;
    }
    $loop->run_until(sub { $done == $n }, timeout_ms => 20_000) or die "batch at $from did not finish\n";
    return;
}

my $t0 = Time::HiRes::time();
my $i = 1;
while ($i <= $WARMUP) { batch($i, $BATCH); $i += $BATCH }
my $rss0 = rss_kb();
my $t1 = Time::HiRes::time();
my $end = $i + $TOTAL;
while ($i < $end) { batch($i, $BATCH); $i += $BATCH }
my $rss1 = rss_kb();
my $t2 = Time::HiRes::time();

my $n = $i - 1;
is($sum, $n * ($n + 1) / 2, "$n requests answered, each once");
my $grew = $rss1 - $rss0;
diag(sprintf "RSS %d kB after %d warm-up requests, %d kB after %d more (%+d kB); %.1f s, %.0f requests/s",
    $rss0, $WARMUP, $rss1, $TOTAL, $grew, $t2 - $t0, $TOTAL / ($t2 - $t1));
cmp_ok($grew, '<', 2048, 'RSS grew by less than 2 MB over the measured requests');
is(StageBus::_live_records(), $records0, 'every callback and data record was released by free_user');
is(scalar @StageBus::GRAVE, 0, 'and dropped');

done_testing;
