#!/usr/bin/perl
# What a publication exports (issue 10, item 2): published without a
# method list, a stage exports its request methods only; its response
# handlers (on_cancel), recall-only methods and internal ones are not
# callable from another program, and a recall reaches only exported and
# recall-only methods.
use strict;
use warnings;

use Test::More;
use Scalar::Util qw(blessed);
use StageBus;

alarm 60;

my $loop   = StageBus::Loop->new;
my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my $svc    = StageBus::Client->new(loop => $loop, address => $broker->address);
my $caller = StageBus::Client->new(loop => $loop, address => $broker->address);

my %ran;
my $stage = StageBus::Stage->new(
    loop        => $loop,
    name        => 'Greeter',
    recall_only => ['answer'],
    internal    => ['secret_admin'],
    handlers    => {
        ask => sub {
            my ($ctx) = @_;
            $ran{ask}++;
            $ctx->req->emit(type => 'question', args => { q => 'name?' });
        },
        answer => sub {
            my ($ctx) = @_;
            $ran{answer}++;
            $ctx->req->return(args => { greeting => "Hello, " . $ctx->args->{name} . "!" });
        },
        secret_admin => sub { $ran{secret_admin}++; $_[0]->req->return },
        on_cancel    => sub { $ran{cancel}++ },
    },
);
my $published;
$stage->publish(client => $svc, session => 'Greeter', on_done => sub { $published = !$_[0] });
$loop->run_until(sub { $published }, timeout_ms => 10000);
ok($published, 'published without a method list');

my $listed;
$caller->listing(on_listing => sub { $listed = [@_] });
$loop->run_until(sub { $listed }, timeout_ms => 10000);
is_deeply($listed->[1][0]{methods}, ['ask'], 'only the request method is exported');

my ($err, $remote);
$caller->subscribe(session => 'Greeter', on_subscribed => sub { ($err, $remote) = @_ });
$loop->run_until(sub { $err || $remote }, timeout_ms => 10000);
ok($remote, 'subscribed');

# Asks for `method` directly; the error's name, or 'return'.
sub call_direct {
    my ($method) = @_;
    my $got;
    my $req = $remote->request(
        method    => $method,
        on_return => sub { $got = 'return' },
        on_error  => sub { $got = $_[0]->rsp->error->name },
    );
    $loop->run_until(sub { defined $got }, timeout_ms => 10000);
    return $got;
}
is(call_direct($_), 'no_such_method', "'$_' is not callable from another program")
    for qw(cancel on_cancel answer secret_admin);

# Asks, then recalls `method` in answer to the question.
sub dialogue {
    my ($method) = @_;
    my $got;
    my $req = $remote->request(
        method      => 'ask',
        on_question => sub { $_[0]->rsp->recall(method => $method, args => { name => 'Ada' }) },
        on_return   => sub { $got = $_[0]->args->{greeting} },
        on_error    => sub { $got = $_[0]->rsp->error->name },
    );
    $loop->run_until(sub { defined $got }, timeout_ms => 10000);
    return $got;
}
is(dialogue('answer'), 'Hello, Ada!', 'a recall reaches the recall-only method');
is(dialogue($_), 'no_such_method', "a recall of '$_' is refused at the publisher")
    for qw(secret_admin cancel);
is($ran{secret_admin} // 0, 0, 'the internal handler never ran');
is($ran{answer}, 1, 'the recall-only method ran once');

done_testing;
