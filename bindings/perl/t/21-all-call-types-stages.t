#!/usr/bin/perl
# POE::Stage's t/01_all_call_types.t (SEMANTICS.md 2.9) in its own
# style, ported by renaming: stage classes App and Something whose
# methods are the handlers, StageBus::Request->new(stage => ...,
# method => ..., on_emit => 'do_recall', on_return => 'do_return'),
# $self->req / $self->rsp for $req / $rsp, req_scope / rsp_scope for the
# req_ / rsp_ lexicals, $go->data for expose. The 19 checks run twice:
# with Something local, and with Something published on a broker and
# reached through a subscription. A POE session makes the top-level
# request, as POE::Stage::App's run did.
use strict;
use warnings;

use Test::More tests => 2 * 19 + 2;
use POE;
use StageBus;
use StageBus::POE;
use StageBus::POE::Stage;

alarm 60;

our ($mode, $run_req_id, $go_req_id);

package Something {
    use parent -norequire, 'StageBus::POE::Stage';
    use Test::More;

    sub do_emit {
        my ($self, $args) = @_;
        my $req = $self->req;
        ok(ref($req) eq 'StageBus::POE::Stage::Req', "[$main::mode] do_emit req is a request");      # 1
        ok($req->caller_id == $main::go_req_id, "[$main::mode] do_emit req id is go's id");          # 2
        ok(!defined $self->rsp, "[$main::mode] do_emit rsp is none");                                 # 3
        ok(!defined $self->req_scope->{key}, "[$main::mode] do_emit own req_key undefined (no bleed)");  # 4
        $self->req_scope->{newkey} = 8675;
        $self->{newkey} = 8675;                                                                       # self scope
        $req->emit;
    }

    sub do_return {
        my ($self, $args) = @_;
        my $req = $self->req;
        ok(ref($req) eq 'StageBus::POE::Stage::Req', "[$main::mode] recalled req is a request");    # 10
        ok($req->caller_id == $main::go_req_id, "[$main::mode] recalled req id is go's id");        # 11
        ok(!defined $self->rsp, "[$main::mode] recalled rsp is none");                               # 12
        ok(!defined $self->req_scope->{key}, "[$main::mode] recalled req_key undefined");            # 13
        ok($self->req_scope->{newkey} == 8675 && $self->{newkey} == 8675,
            "[$main::mode] recalled req_newkey is the 8675 stored by do_emit");                       # 14
        $req->return;
    }
}

package App {
    use parent -norequire, 'StageBus::POE::Stage';
    use Test::More;

    sub on_init { my ($self, $args) = @_; $self->{remote} = $args->{remote} }

    sub on_run {
        my ($self, $args) = @_;
        my $something = $self->{remote} // ($self->req_scope->{something} = Something->new);
        my $go = StageBus::Request->new(
            stage     => $something,
            method    => 'do_emit',
            on_emit   => 'do_recall',
            on_return => 'do_return',
        );
        $main::run_req_id = $self->req->id;
        $main::go_req_id  = $go->id;
        $self->req_scope->{go} = $go;
        $go->data->{key} = 309;                                                 # expose $req_go => my $go_key
    }

    sub do_recall {
        my ($self, $args) = @_;
        my ($req, $rsp) = ($self->req, $self->rsp);
        ok(ref($req) eq 'StageBus::POE::Stage::Req', "[$main::mode] do_recall req is a request");   # 5
        ok($rsp->type eq 'emit' && !$rsp->is_final, "[$main::mode] do_recall rsp is an emit");        # 6
        ok($req->id == $main::run_req_id, "[$main::mode] do_recall req id is run's id");             # 7
        ok($rsp->id == $main::go_req_id, "[$main::mode] do_recall rsp id is go's id");               # 8
        ok($self->rsp_scope->{key} == 309, "[$main::mode] do_recall rsp_key is 309");                # 9
        $rsp->recall(method => 'do_return');
    }

    sub do_return {
        my ($self, $args) = @_;
        my ($req, $rsp) = ($self->req, $self->rsp);
        ok(ref($req) eq 'StageBus::POE::Stage::Req', "[$main::mode] do_return req is a request");   # 15
        ok($rsp->type eq 'return' && $rsp->is_final, "[$main::mode] do_return rsp is a return");     # 16
        ok($req->id == $main::run_req_id, "[$main::mode] do_return req id is run's id");             # 17
        ok($rsp->id == $main::go_req_id, "[$main::mode] do_return rsp id is go's id");               # 18
        ok($self->rsp_scope->{key} == 309, "[$main::mode] do_return rsp_key is 309");                # 19
        $req->return;
    }
}

package main;

my $loop = StageBus::Loop->new;
my $host = StageBus::POE->new(loop => $loop);
StageBus::POE::Stage->set_default_loop($loop);
my @modes = qw(local tcp);
my ($broker, $client, $published_something, @returned);

POE::Session->create(
    inline_states => {
        _start => sub { $_[KERNEL]->alias_set('runner'); $_[KERNEL]->yield('next'); $_[KERNEL]->delay(timeout => 30) },
        next   => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            delete @$heap{qw(app run remote)};
            $mode = shift @modes;
            if (!defined $mode) {
                $kernel->delay('timeout');
                $kernel->alias_remove('runner');
                $host->shutdown;
                return;
            }
            return $kernel->yield('run_app') if $mode eq 'local';
            $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
            $client = StageBus::Client->new(loop => $loop, address => $broker->address);
            $published_something = Something->new(name => 'Something');
            $published_something->publish(client => $client, session => 'Something', methods => [qw(do_emit do_return)],
                on_done => sub {
                    die "publish: $_[0]" if $_[0];
                    $client->subscribe(session => 'Something', on_subscribed => sub {
                        my ($err, $remote) = @_;
                        die "subscribe: $err" if $err;
                        $heap->{remote} = $remote;
                        $kernel->yield('run_app');
                    });
                });
        },
        run_app => sub {
            my ($kernel, $heap) = @_[KERNEL, HEAP];
            $heap->{app} = App->new(remote => $heap->{remote});
            $heap->{run} = StageBus::Request->new(stage => $heap->{app}, method => 'run',
                on_return => sub { push @returned, $mode; $kernel->yield('next') },
                on_error  => sub { fail("[$mode] run failed: " . $_[0]->rsp->error); $kernel->yield('next') });
        },
        timeout => sub { fail('the dialogues finished in time'); $_[KERNEL]->alias_remove('runner'); $host->shutdown },
    },
);

POE::Kernel->run;
is_deeply(\@returned, [qw(local tcp)], "App's run returned in both modes");
ok(!@modes, 'POE::Kernel->run returned after both');
