package AllCallTypes;
# POE::Stage's t/01_all_call_types.t (SEMANTICS.md 2.9): request, emit,
# recall and return between the stages App and Something, with the 19
# checks of the original, against a local Something or the same stage
# published on a broker. The host (POE, AnyEvent) drives the loop; this
# module only needs it to be dispatched.

use strict;
use warnings;

use Scalar::Util qw(blessed);
use Test::More;
use StageBus;

# Starts the dialogue; calls $on_done->() once the top-level request got
# App's return (or an error, which fails a check).
sub start {
    my (%a) = @_;
    my ($loop, $mode, $on_done) = @a{qw(loop mode on_done)};
    my $self = { loop => $loop, mode => $mode, on_done => $on_done, ids => {} };
    my $ids = $self->{ids};
    my $t = "[$mode]";

    my $something = StageBus::Stage->new(
        loop     => $loop,
        name     => 'Something',
        handlers => {
            do_emit => sub {
                my ($ctx) = @_;
                my $req = $ctx->req;
                ok(blessed($req) && $req->isa('StageBus::Served'), "$t 1 do_emit: req is a request");
                is($req->caller_id, $ids->{go}, "$t 2 do_emit: req caller_id is go's id");
                ok(!defined $ctx->rsp, "$t 3 do_emit: no rsp");
                ok(!defined $req->data->{key}, "$t 4 do_emit: own req-scope key is undefined (no bleed)");
                $req->data->{newkey} = 8675;
                $ctx->stage->data->{newkey} = 8675;
                $req->emit;
            },
            do_return => sub {
                my ($ctx) = @_;
                my $req = $ctx->req;
                ok(blessed($req) && $req->isa('StageBus::Served'), "$t 10 recall: req is a request");
                is($req->caller_id, $ids->{go}, "$t 11 recall: req caller_id is go's id");
                ok(!defined $ctx->rsp, "$t 12 recall: no rsp");
                ok(!defined $req->data->{key}, "$t 13 recall: req-scope key is undefined");
                ok($req->data->{newkey} == 8675 && $ctx->stage->data->{newkey} == 8675,
                    "$t 14 recall: req-scope newkey is the 8675 stored by do_emit");
                $req->return;
            },
        },
    );
    $self->{something} = $something;

    my $app = StageBus::Stage->new(
        loop     => $loop,
        name     => 'App',
        handlers => {
            run => sub {
                my ($ctx) = @_;
                my $go = StageBus::Request->new(
                    to        => $self->{target},
                    method    => 'do_emit',
                    on_emit   => 'do_recall',
                    on_return => 'do_return',
                );
                $go->data->{key} = 309;
                $ids->{run} = $ctx->req->id;
                $ids->{go}  = $go->id;
                # Kept in App's req scope: it lives as long as run does.
                $ctx->req->data->{go} = $go;
            },
            do_recall => sub {
                my ($ctx) = @_;
                my ($req, $rsp) = ($ctx->req, $ctx->rsp);
                ok(blessed($req) && $req->isa('StageBus::Served'), "$t 5 do_recall: req is a request");
                ok($rsp && $rsp->type eq 'emit' && !$rsp->is_final, "$t 6 do_recall: rsp is an emit");
                is($req->id, $ids->{run}, "$t 7 do_recall: req id is the run request's id");
                is($rsp->id, $ids->{go}, "$t 8 do_recall: rsp id is go's id");
                is($rsp->data->{key}, 309, "$t 9 do_recall: rsp-scope key is 309");
                $rsp->recall(method => 'do_return');
            },
            do_return => sub {
                my ($ctx) = @_;
                my ($req, $rsp) = ($ctx->req, $ctx->rsp);
                ok(blessed($req) && $req->isa('StageBus::Served'), "$t 15 do_return: req is a request");
                ok($rsp && $rsp->type eq 'return' && $rsp->is_final, "$t 16 do_return: rsp is a return");
                is($req->id, $ids->{run}, "$t 17 do_return: req id is the run request's id");
                is($rsp->id, $ids->{go}, "$t 18 do_return: rsp id is go's id");
                is($rsp->data->{key}, 309, "$t 19 do_return: rsp-scope key is 309");
                $req->return(args => { done => 1 });
            },
        },
    );
    $self->{app} = $app;

    my $go = sub {
        $self->{top} = StageBus::Request->new(
            to        => $app,
            method    => 'run',
            on_return => sub { $self->{finished} = 1; $on_done->() },
            on_error  => sub {
                fail("$t the run request failed: " . $_[0]->rsp->error);
                $self->{finished} = 1;
                $on_done->();
            },
        );
    };

    if ($mode eq 'local') {
        $self->{target} = $something;
        $go->();
        return $self;
    }

    # Remote: Something behind a broker (two clients: publisher, caller).
    my $listen = $mode eq 'unix' ? 'unix:' . _sock_path() : 'tcp://127.0.0.1:0';
    $self->{broker} = StageBus::Broker->new(loop => $loop, listen => [$listen]);
    my $addr = $self->{broker}->address;
    $self->{pub} = StageBus::Client->new(loop => $loop, address => $addr);
    $self->{sub} = StageBus::Client->new(loop => $loop, address => $addr);
    $something->publish(client => $self->{pub}, session => 'Something', on_done => sub {
        my ($err) = @_;
        if ($err) { fail("$t publish: $err"); $on_done->(); return }
        $self->{sub}->subscribe(session => 'Something', on_subscribed => sub {
            my ($err, $remote) = @_;
            if ($err) { fail("$t subscribe: $err"); $on_done->(); return }
            $self->{target} = $remote;
            $go->();
        });
    });
    return $self;
}

my $n = 0;
sub _sock_path {
    require File::Temp;
    our $DIR ||= File::Temp::tempdir('stagebus-perl-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    return "$DIR/bus" . $n++ . '.sock';
}

1;
