#!/usr/bin/perl
# The log handler (issue 17, item 3): the library's records reach a Perl
# handler with level, target, message and fields; a broker logs a peer
# that breaks the protocol; a response nobody handles is logged; records
# finer than the level asked for stay away; undef stops logging.
use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use Scalar::Util qw(blessed);
use StageBus;

alarm 60;

my @records;
StageBus::set_log_handler(sub { push @records, [@_] }, 'warn');

my $loop  = StageBus::Loop->new;
my $stage = StageBus::Stage->new(
    loop     => $loop,
    name     => 'Worker',
    handlers => { work => sub { $_[0]->req->return(type => 'done') } },
);
my $req = $stage->request(method => 'work');
$loop->run_until(sub { grep { $_->[1] eq 'stagebus::request' } @records }, timeout_ms => 5000);
my ($unhandled) = grep { $_->[1] eq 'stagebus::request' } @records;
ok($unhandled, 'a response nobody handles is logged');
is($unhandled->[0], 'warn', 'at warn level');
like($unhandled->[2], qr/unhandled 'done'/, 'saying what went unhandled');
is($unhandled->[3]{method}, 'work', 'with the method as a field');
is($unhandled->[3]{kind}, 'done', 'and the response type');

my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my ($port) = $broker->address =~ /:(\d+)$/;
# Sends a frame that is no hello; waits for the broker's record of it,
# or (with $quiet, no handler to record it) for the broker to close the
# connection.
sub send_junk {
    my ($quiet) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die "connect: $!";
    print {$sock} pack('V', 12), 'not a hello!';
    $sock->flush;
    if ($quiet) {
        $sock->blocking(0);
        # Whatever the broker wrote first is read through, to its end.
        my $closed = sub {
            while (1) {
                my $n = sysread($sock, my $buf, 4096);
                return 0 if !defined $n;    # nothing more yet
                return 1 if $n == 0;
            }
        };
        ok($loop->run_until($closed, timeout_ms => 5000), 'the broker closed the junk connection');
    } else {
        $loop->run_until(sub { grep { ($_->[3]{reason} // '') eq 'protocol' } @records },
            timeout_ms => 5000);
    }
    close $sock;
}
send_junk();
my ($closed) = grep { ($_->[3]{reason} // '') eq 'protocol' } @records;
ok($closed, 'a peer that breaks the protocol is logged');
is($closed && $closed->[1], 'stagebus::broker', 'by the broker');
like($closed && $closed->[3]{conn}, qr/^\d+$/, 'with its connection');
ok(!(grep { exists $_->[3]{peer} } @records), 'the accept (debug) stays away at warn');

@records = ();
StageBus::set_log_handler(sub { push @records, [@_] }, 'debug');
send_junk();
ok((grep { exists $_->[3]{peer} } @records), 'at debug the accept arrives with the peer');

@records = ();
my $fired;
$loop->timer(after_ms => 1, cb => sub { $fired = 1; die "boom\n" });
$loop->run_until(sub { $fired && @records }, timeout_ms => 5000);
my ($died) = grep { $_->[1] eq 'stagebus::perl' } @records;
like($died && $died->[2], qr/timer died: boom/, "the binding's own diagnostics reach the handler too");

StageBus::set_log_handler(undef);
@records = ();
send_junk('quiet');
$loop->run_until(sub { 0 }, timeout_ms => 100);
is(scalar @records, 0, 'undef stops logging');

my $e = do { local $@; eval { StageBus::set_log_handler(sub { }, 'loud') }; $@ };
ok(blessed($e) && $e->is('invalid_argument'), 'an unknown level is refused');

done_testing;
