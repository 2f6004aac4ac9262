#!/usr/bin/perl
# Callbacks run in the POE session that made the request: yield and
# delay from response handlers (closures, proxy response events, stage
# methods, completions) reach that session, not StageBus::POE's own.
use strict;
use warnings;

use Test::More;
use POE;
use StageBus;
use StageBus::POE;
use StageBus::POE::Proxy;
use StageBus::POE::Stage;

alarm 60;

my $loop   = StageBus::Loop->new;
my $host   = StageBus::POE->new(loop => $loop);
my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
my $client = StageBus::Client->new(loop => $loop, address => $broker->address);

my $echo = StageBus::Stage->new(loop => $loop, name => 'Echo', handlers => {
    echo => sub {
        my ($ctx) = @_;
        $ctx->req->emit(type => 'progress', args => $ctx->args);
        $ctx->req->return(args => $ctx->args);
    },
});
my $published;
$echo->publish(client => $client, session => 'Echo', on_done => sub { $published = !$_[0] });
$loop->run_until(sub { $published }, timeout_ms => 10000) or BAIL_OUT('cannot publish Echo');

my %arrived;    # "who event" => the session id it ran in
my %own;        # who => its session id
my $sessions = 0;

package Asker {
    use parent -norequire, 'StageBus::POE::Stage';
    use POE::Kernel;

    sub on_init { my ($self, $args) = @_; $self->{target} = $args->{target} }

    sub ask {
        my ($self, $args) = @_;
        $self->req_scope->{r} = StageBus::Request->new(stage => $self->{target}, method => 'echo',
            args => { who => 'stage' }, on_return => 'answered', on_progress => 'on_progress');
    }

    sub on_progress { }

    sub answered {
        my ($self, $args) = @_;
        $poe_kernel->yield(stage_yield => $args->{who});
        $poe_kernel->delay(stage_delay => 0.02, $args->{who});
        $self->req->return;
    }
}

sub states {
    my ($who) = @_;
    return {
        _start => sub {
            my ($kernel, $heap, $session) = @_[KERNEL, HEAP, SESSION];
            $own{$who} = $session->ID;
            $kernel->alias_set("s-$who");
            $sessions++;
            # Closure handlers.
            $heap->{req} = $echo->request(method => 'echo', args => { who => $who },
                on_progress => sub { $poe_kernel->yield(closure_yield => $_[0]->args->{who}) },
                on_return   => sub { $poe_kernel->delay(closure_delay => 0.02, $_[0]->args->{who}) });
            # A completion.
            $client->listing(on_listing => sub { $poe_kernel->yield(listing_yield => $who) });
            # A proxy (each its own alias).
            StageBus::POE::Proxy->subscribe(client => $client, session => 'Echo', alias => "Echo-$who",
                response_event => 'proxy_rsp', return_event => 'subscribed');
            # A stage made in this session, and a request to it.
            $heap->{asker} = Asker->new(loop => $loop, target => $echo);
            $heap->{ask} = StageBus::Request->new(stage => $heap->{asker}, method => 'ask',
                on_return => sub { });
        },
        subscribed => sub { $_[KERNEL]->post("Echo-$who" => echo => $who) },
        proxy_rsp  => sub {
            my ($kernel, $rsp) = @_[KERNEL, ARG0];
            return unless $rsp->is_final;
            $kernel->yield(proxy_yield => $rsp->values);
            $kernel->delay(proxy_delay => 0.02, $rsp->values);
        },
        map({
            my $ev = $_;
            ($ev => sub {
                my ($kernel, $session, $what) = @_[KERNEL, SESSION, ARG0];
                $arrived{"$who $ev"} = [$session->ID, $what];
                $kernel->yield('maybe_done');
            })
        } qw(closure_yield closure_delay listing_yield proxy_yield proxy_delay stage_yield stage_delay)),
        maybe_done => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            return if keys(%arrived) < 14;
            $kernel->post("s-$_" => 'finish') for keys %own;
        },
        finish => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            return if $heap->{done}++;
            StageBus::POE::Proxy->by_alias("Echo-$who")->unsubscribe(return_event => 'unsubscribed');
        },
        unsubscribed => sub {
            delete @{ $_[HEAP] }{qw(req ask asker)};
            $_[KERNEL]->alias_remove("s-$who");
            $host->shutdown if --$sessions == 0;
        },
    };
}

POE::Session->create(inline_states => states($_)) for qw(one two);
POE::Kernel->run;

for my $who (qw(one two)) {
    for my $ev (qw(closure_yield closure_delay listing_yield proxy_yield proxy_delay stage_yield stage_delay)) {
        my $what = $ev eq 'listing_yield' ? $who : $ev =~ /^stage/ ? 'stage' : $who;
        is_deeply($arrived{"$who $ev"}, [$own{$who}, $what], "$who: $ev reached the session that made the request");
    }
}
isnt($own{one}, $own{two}, 'two distinct sessions');
done_testing;
