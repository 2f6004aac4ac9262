#!/usr/bin/perl
# A POE program with sessions and timers of its own posts to a proxy
# alias ('Calc') whose session is an ordinary POE session of another
# process (t/lib/publisher_poe.pl): positional and named args, emits,
# answers to the session that posted, a die, and the proxy going away
# (with an event) when the publisher is gone.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use POE;
use StageBus;
use StageBus::POE;
use StageBus::POE::Proxy;

alarm 90;

my $loop   = StageBus::Loop->new;
my $host   = StageBus::POE->new(loop => $loop);
my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
my $client = StageBus::Client->new(loop => $loop, address => $broker->address);

my @inc = map { "-I$_" } @INC;
my $pid = open(my $pub, '-|', $^X, @inc, "$FindBin::Bin/lib/publisher_poe.pl", $broker->address)
    // die "cannot start the publisher: $!";
END { kill 'KILL', $pid if $pid && !$? }

# The publisher says "ready" once published; read it while the broker runs.
{
    my $ready = '';
    my $rin = '';
    vec($rin, fileno($pub), 1) = 1;
    my $deadline = time + 30;
    while ($ready !~ /^ready$/m && time < $deadline) {
        $loop->run_for(20);
        if (select(my $rout = $rin, undef, undef, 0)) {
            sysread($pub, my $buf, 1024) or last;
            $ready .= $buf;
        }
    }
    like($ready, qr/^ready$/m, 'the publisher process published Calc');
}

my (%got, @gone, $subscribed);

# The subscriber: makes the proxy, then starts two sessions of its own.
POE::Session->create(
    inline_states => {
        _start => sub {
            $_[KERNEL]->alias_set('main');
            StageBus::POE::Proxy->subscribe(
                client       => $client,
                session      => 'Calc',
                return_event => 'subscribed',
                gone_event   => 'calc_gone',
                tag          => { mine => 'T' },
            );
            $_[KERNEL]->delay(timeout => 60);
        },
        subscribed => sub {
            my $r = $_[ARG0];
            ok($r->{success}, 'subscribed to Calc') or diag("subscribe: $r->{error}");
            is_deeply($r->{tag}, { mine => 'T' }, 'the tag came back');
            is_deeply([sort @{ $r->{methods} }], [qw(add boom concat count quit)], 'the proxy has the exported events');
            $subscribed = 1;
            for my $who (qw(alice bob)) {
                POE::Session->create(inline_states => caller_states($who), heap => { who => $who });
            }
        },
        calc_gone => sub {
            my $g = $_[ARG0];
            push @gone, $g;
            $_[KERNEL]->yield('check_gone');
        },
        check_gone => sub {
            my $kernel = $_[KERNEL];
            is($gone[0]{session_name}, 'Calc', 'calc_gone: the publisher of Calc is gone');
            ok($gone[0]{error} && $gone[0]{error}->is('publisher_gone'), 'its error is publisher_gone')
                or diag("error: " . ($gone[0]{error} // 'none'));
            is_deeply($gone[0]{tag}, { mine => 'T' }, 'with the tag of the subscription');
            ok(!$kernel->post(Calc => add => 1, 2), 'the proxy alias is gone: a post to it fails');
            $kernel->delay('timeout');
            $kernel->alias_remove('main');
            close $pub;
            is($?, 0, 'the publisher process exited 0');
            $pid = undef;
            $host->shutdown;
        },
        timeout => sub {
            fail('finished in time');
            diag(explain(\%got));
            $_[KERNEL]->alias_remove('main');
            $host->shutdown;
        },
    },
);

# Each caller: a timer posting every 20 ms, results in its own heap.
sub caller_states {
    my ($who) = @_;
    return {
        _start => sub { $_[KERNEL]->delay(next => 0.02) },
        next   => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            my $i = ++$heap->{i};
            if ($i <= 3) {
                $kernel->post(Calc => add => $i, 100,
                    StageBus::POE::Proxy->reply_to(event => 'added', tag => "$who-$i"));
                $kernel->delay(next => 0.02);
                return;
            }
            $kernel->post(Calc => concat => { x => $who, y => 'z' }, StageBus::POE::Proxy->reply_to(event => 'joined'));
            $heap->{count_id} = $kernel->call(Calc => count => 3, StageBus::POE::Proxy->reply_to(event => 'counted'));
            $kernel->post(Calc => boom => "$who failed", StageBus::POE::Proxy->reply_to(event => 'boomed'));
        },
        added => sub {
            my ($heap, $rsp) = @_[HEAP, ARG0];
            push @{ $got{$who}{added} }, [$rsp->tag, $rsp->type, $rsp->args->{result}, $_[SESSION]->ID == $_[SENDER]->ID ? 'self' : 'other'];
        },
        joined  => sub { $got{$who}{joined} = $_[ARG1]{joined} },
        counted => sub {
            my $rsp = $_[ARG0];
            $got{$who}{count_ids}{ $rsp->id == $_[HEAP]{count_id} ? 'same' : 'other' }++;
            push @{ $got{$who}{counted} }, $rsp->type eq 'tick' ? "tick $rsp->{args}{i}" : "$rsp->{type} $rsp->{args}{total}";
            $_[KERNEL]->yield('check') if $rsp->is_final;
        },
        boomed => sub {
            my $rsp = $_[ARG0];
            $got{$who}{boom} = [$rsp->type, $rsp->error && $rsp->error->name, $rsp->error && $rsp->error->message];
        },
        check => sub {
            my $kernel = $_[KERNEL];
            $got{$who}{done} = 1;
            return unless $got{alice}{done} && $got{bob}{done};
            for my $w (qw(alice bob)) {
                is_deeply([map { [@$_[0 .. 2]] } @{ $got{$w}{added} }],
                    [map { ["$w-$_", 'return', $_ + 100] } 1 .. 3],
                    "$w: add(i, 100) answered i + 100 to $w, in order, with its tags");
                is($got{$w}{joined}, "$w-z", "$w: named args went as a hash and came back");
                is_deeply($got{$w}{counted}, ['tick 1', 'tick 2', 'tick 3', 'return 3'],
                    "$w: the emits of count reached $w, then its return");
                is_deeply($got{$w}{count_ids}, { same => 4 }, "$w: a call of the proxy returned the id its responses carry");
                is_deeply($got{$w}{boom}, ['error', 'handler_failed', "$w failed"], "$w: the die in boom is handler_failed");
            }
            # Ends the publisher: the proxy must go away with an event.
            $kernel->post(Calc => 'quit');
        },
    };
}

POE::Kernel->run;
ok($subscribed && @gone == 1, 'POE::Kernel->run returned after the proxy went away');
done_testing;
