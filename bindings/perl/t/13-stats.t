#!/usr/bin/perl
# The broker's report of itself (issue 17, item 2) from Perl: a scripted
# run's figures from $broker->report, the same from $client->stats over
# the wire, and the Prometheus text.
use strict;
use warnings;

use Test::More;
use StageBus;

alarm 60;

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my $svc    = StageBus::Client->new(loop => $loop, address => $broker->address);
my $caller = StageBus::Client->new(loop => $loop, address => $broker->address);
my $stage  = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Clock',
    handlers => {
        time   => sub { $_[0]->req->return },
        broken => sub { $_[0]->req->fail(code => 'handler_failed', message => 'broken') },
    },
);
my ($published, $remote);
$stage->publish(client => $svc, session => 'Clock', on_done => sub { $published = !$_[0] });
$loop->run_until(sub { $published }, timeout_ms => 5000) or BAIL_OUT('publish failed');
$caller->subscribe(session => 'Clock', on_subscribed => sub { $remote = $_[1] });
$loop->run_until(sub { $remote }, timeout_ms => 5000) or BAIL_OUT('subscribe failed');

for my $method (qw(time broken broken)) {
    my $done;
    my $req = $remote->request(method => $method, on_return => sub { $done = 1 }, on_error => sub { $done = 1 });
    $loop->run_until(sub { $done }, timeout_ms => 5000) or BAIL_OUT("$method got no answer");
}

my $report = $broker->report;
is($report->{totals}{calls}, 3, 'three calls delivered');
is($report->{errors}{handler_failed}, 2, 'two failed with handler_failed');
is(scalar @{ $report->{sessions} }, 1, 'one session');
is($report->{sessions}[0]{name}, 'Clock', 'named Clock');
is($report->{sessions}[0]{errors}{handler_failed}, 2, 'its errors by code');
is(scalar @{ $report->{connections} }, 2, 'two connections');
like($report->{connections}[0]{peer}, qr/^127\.0\.0\.1:\d+$/, 'with their peer address');

my ($err, $remote_report);
$caller->stats(on_stats => sub { ($err, $remote_report) = @_; $remote_report //= {} });
$loop->run_until(sub { $remote_report }, timeout_ms => 5000);
ok(!$err, 'stats over the wire succeeds');
is($remote_report->{totals}{calls}, 3, 'with the same figures');
is_deeply($remote_report->{errors}, $report->{errors}, 'and the same errors');

my $text = $broker->report_prometheus;
like($text, qr/^stagebus_calls_total 3$/m, 'the Prometheus text has the calls');
like($text, qr/^stagebus_errors_total\{code="handler_failed"\} 2$/m, 'and the errors by code');

done_testing;
