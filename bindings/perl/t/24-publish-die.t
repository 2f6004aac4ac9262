#!/usr/bin/perl
# An existing POE session published (StageBus::POE::Publish): a die in
# one of its events is handler_failed (or the StageBus::Error's code) for
# the caller and the session lives on; a kept handle answers later; a
# cancel arrives as the cancel event; the events run inside the
# published session (yield, $_[SESSION]).
use strict;
use warnings;

use Test::More;
use POE;
use StageBus;
use StageBus::POE;
use StageBus::POE::Publish;

alarm 60;

my $loop   = StageBus::Loop->new;
my $host   = StageBus::POE->new(loop => $loop);
my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
my $server_client = StageBus::Client->new(loop => $loop, address => $broker->address);
my $caller_client = StageBus::Client->new(loop => $loop, address => $broker->address);

my (%seen, $worker_id);

$worker_id = POE::Session->create(
    inline_states => {
        _start => sub {
            $_[KERNEL]->alias_set('worker');
            StageBus::POE::Publish->new(
                client       => $server_client,
                name         => 'Worker',
                events       => [qw(explode refuse fine later slow)],
                cancel_event => 'cancelled',
                return_event => 'published',
                tag          => 'pub-tag',
            );
        },
        published => sub {
            my $r = $_[ARG0];
            ok($r->{success} && $r->{session_name} eq 'Worker' && $r->{tag} eq 'pub-tag',
                'the completion of the publish is an event of the publishing session, with its tag');
            $_[KERNEL]->post(tester => 'go');
        },
        explode => sub { $seen{explode} = $_[SESSION]->ID; die "kaboom at step $_[ARG0]\n" },
        refuse  => sub { StageBus::Error->throw(code => 'refused', message => 'not today') },
        fine    => sub { $_[KERNEL]->yield('after_fine'); return "fine $_[ARG0]" },
        after_fine => sub { $seen{after_fine} = $_[SESSION]->ID },
        later   => sub {
            my ($kernel, $heap, $req) = @_[KERNEL, HEAP, $#_];
            $heap->{later} = $req;
            $kernel->delay(answer_later => 0.05);
            return 'ignored: the handle was kept';
        },
        answer_later => sub { (delete $_[HEAP]{later})->return(args => { when => 'later' }) },
        slow   => sub { $_[HEAP]{slow} = $_[-1]; $_[-1]->emit(type => 'started'); return },
        cancelled => sub {
            my ($heap, $h) = @_[HEAP, ARG0];
            $seen{cancelled} = [$h && $h->event, $_[SESSION]->ID];
            delete $heap->{slow};
        },
        done => sub { $_[KERNEL]->alias_remove('worker') },
    },
)->ID;

POE::Session->create(
    inline_states => {
        _start => sub { $_[KERNEL]->alias_set('tester'); $_[KERNEL]->delay(timeout => 30) },
        go     => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            $caller_client->subscribe(session => 'Worker', on_subscribed => sub {
                my ($err, $remote) = @_;
                die "subscribe: $err" if $err;
                $heap->{remote} = $remote;
                my $answer = sub { my $k = shift; sub { $kernel->yield(answered => $k, $_[0]->rsp->type, $_[0]->args, $_[0]->rsp->error) } };
                $heap->{reqs} = [
                    $remote->request(method => 'explode', args => { ARG0 => 1 }, fallback => $answer->('explode')),
                    $remote->request(method => 'refuse',  fallback => $answer->('refuse')),
                    $remote->request(method => 'fine',    args => { ARG0 => 'x' }, fallback => $answer->('fine')),
                    $remote->request(method => 'later',   fallback => $answer->('later')),
                    $remote->request(method => 'explode', args => { ARG0 => 2 }, fallback => $answer->('explode2')),
                ];
                $heap->{slow} = $remote->request(method => 'slow', fallback => sub {
                    my ($ctx) = @_;
                    $kernel->yield(answered => 'slow', $ctx->rsp->type, $ctx->args, $ctx->rsp->error);
                    $ctx->rsp->cancel if $ctx->rsp->type eq 'started';
                });
            });
        },
        answered => sub {
            my ($heap, $what, $type, $args, $err) = @_[HEAP, ARG0 .. ARG3];
            $heap->{got}{$what} = [$type, $err ? ($err->name, $err->message) : $args];
            $_[KERNEL]->yield('check') if keys %{ $heap->{got} } == 6 && $seen{cancelled};
            $_[KERNEL]->delay(check => 0.2) if keys %{ $heap->{got} } == 6;
        },
        check => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            return if $heap->{checked}++;
            my $got = $heap->{got};
            is_deeply($got->{explode}, ['error', 'handler_failed', 'kaboom at step 1'],
                'a die in a published event is handler_failed with its message for the caller');
            is($seen{explode}, $worker_id, 'the event ran inside the published session');
            is_deeply($got->{explode2}, ['error', 'handler_failed', 'kaboom at step 2'],
                'the session lives on after the die: the same event dies again on its own');
            is_deeply($got->{refuse}, ['error', 'refused', 'not today'], 'a StageBus::Error keeps its code');
            is_deeply($got->{fine}, ['return', { result => 'fine x' }], "an event's return value is the answer");
            is($seen{after_fine}, $worker_id, 'a yield from the event reached the published session');
            is_deeply($got->{later}, ['return', { when => 'later' }], 'a kept handle answers later');
            is_deeply($got->{slow}, ['started', {}], 'the emit of slow arrived');
            is_deeply($seen{cancelled}, ['slow', $worker_id], "the caller's cancel is the cancel event, in the session");
            delete @$heap{qw(reqs slow)};
            # A second publication of the name fails, and leaves the first alone.
            StageBus::POE::Publish->new(client => $caller_client, name => 'Worker', events => ['go'],
                return_event => 'dup');
        },
        dup => sub {
            my ($kernel, $heap, $r) = @_[KERNEL, HEAP, ARG0];
            ok(!$r->{success} && $r->{error}->is('already_exists'), 'publishing the name again fails: already_exists');
            $heap->{again} = $heap->{remote}->request(method => 'fine', args => { ARG0 => 'again' },
                on_return => sub { $kernel->yield(still_served => $_[0]->args->{result}) });
        },
        still_served => sub {
            my ($kernel, $heap, $result) = @_[KERNEL, HEAP, ARG0];
            is($result, 'fine again', 'the first publication still serves');
            delete @$heap{qw(remote again)};
            $kernel->delay('timeout');
            $kernel->alias_remove('tester');
            $kernel->post(worker => 'done');
            StageBus::POE::Publish->published('Worker')->rescind(return_event => 'rescinded', tag => 'r');
        },
        rescinded => sub {
            my $r = $_[ARG0];
            ok($r->{success} && $r->{tag} eq 'r', 'rescinded, the completion as an event with its tag');
            ok(!StageBus::POE::Publish->published('Worker'), 'the publication is forgotten');
            $host->shutdown;
        },
        timeout => sub { fail('finished in time'); diag(explain($_[HEAP]{got})); $host->shutdown },
    },
);

POE::Kernel->run;
done_testing;
