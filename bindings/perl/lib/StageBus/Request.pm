package StageBus::Request;

use strict;
use warnings;

use Scalar::Util ();

our $VERSION = '0.01';

sub new {
    my ($class, @args) = @_;
    my $a = StageBus::_named('StageBus::Request->new', \@args, 'method');
    my $to = $a->{to} // $a->{stage};
    # A POE::Stage-style stage object (StageBus::POE::Stage) stands for its stage.
    $to = $to->_stagebus_stage if Scalar::Util::blessed($to) && $to->can('_stagebus_stage');
    Scalar::Util::blessed($to) && ($to->isa('StageBus::Stage') || $to->isa('StageBus::Remote'))
        or StageBus::_croak(invalid_argument => 'StageBus::Request->new: to => a StageBus::Stage or StageBus::Remote is needed');
    my $loop = $to->{loop};
    my $method = StageBus::_to_c($a->{method}, 'the method');
    my $b = $to->isa('StageBus::Remote')
        ? StageBus::_C::sb_request_to_remote($to->_p, $method)
        : StageBus::_C::sb_request_to_stage($to->_p, $method);
    $b or StageBus::_croak(invalid_argument => 'request: ' . StageBus::_from_c(StageBus::_C::sb_last_error()));

    my $ok = eval {
        if (defined $a->{args}) {
            StageBus::_with_args($a->{args},
                sub { StageBus::_check(StageBus::_C::sb_request_builder_args($b, $_[0]), 'request args') });
        }
        my %on = %{ $a->{on} || {} };
        for my $k (keys %$a) {
            $on{$1} = $a->{$k} if $k =~ /^on_(.+)$/;
        }
        for my $kind (sort keys %on) {
            my $h = $on{$kind};
            my $ckind = StageBus::_to_c($kind, 'a response type');
            if (ref $h eq 'CODE') {
                # Inside a StageBus::POE::Stage handler: called as a method.
                $h = $StageBus::WRAP_RESPONSE->($h) if $StageBus::WRAP_RESPONSE;
                my @cb = StageBus::_cb_args(handler => $h, loop => $loop, what => "on_$kind");
                StageBus::_check(StageBus::_C::sb_request_builder_on($b, $ckind, @cb), "on_$kind");
            }
            elsif (defined $h && !ref $h) {
                StageBus::_check(
                    StageBus::_C::sb_request_builder_on_method($b, $ckind, StageBus::_to_c($h, 'a method')),
                    "on_$kind");
            }
            else {
                StageBus::_croak(invalid_argument => "on_$kind must be a code ref or a method name");
            }
        }
        if ($a->{fallback}) {
            my @cb = StageBus::_cb_args(handler => $a->{fallback}, loop => $loop, what => 'fallback');
            StageBus::_check(StageBus::_C::sb_request_builder_fallback($b, @cb), 'fallback');
        }
        if (defined $a->{role}) {
            StageBus::_check(StageBus::_C::sb_request_builder_role($b, StageBus::_to_c($a->{role}, 'the role')), 'role');
        }
        if (defined $a->{timeout_ms}) {
            StageBus::_check(StageBus::_C::sb_request_builder_timeout_ms($b, $a->{timeout_ms}), 'timeout');
        }
        if (defined $a->{parent}) {
            Scalar::Util::blessed($a->{parent}) && $a->{parent}->isa('StageBus::Served')
                or StageBus::_croak(invalid_argument => 'parent must be a StageBus::Served (a request being served)');
            StageBus::_check(StageBus::_C::sb_request_builder_parent($b, $a->{parent}->_p), 'parent');
        }
        1;
    };
    if (!$ok) {
        my $e = $@;
        StageBus::_C::sb_request_builder_free($b);
        StageBus::_bury();
        die $e;
    }
    my $p;
    StageBus::_check(StageBus::_C::sb_request_send($b, \$p), "request '$a->{method}'");
    return StageBus::_track(bless { p => $p, loop => $loop, pid => $$, method => $a->{method} }, $class);
}

sub _p {
    my ($self) = @_;
    $self->{loop}->_p if $self->{loop};
    return $self->{p} // StageBus::_croak(invalid_state => 'the request was freed');
}

sub method  { $_[0]{method} }
sub id      { StageBus::_C::sb_request_id($_[0]->_p) }
sub is_open { StageBus::_C::sb_request_is_open($_[0]->_p) ? 1 : 0 }

# Cancels the request and everything made on its behalf; returns
# whether it was still open.
sub cancel {
    my ($self) = @_;
    my $r = StageBus::_C::sb_request_cancel($self->_p) ? 1 : 0;
    StageBus::_bury();
    return $r;
}

# The caller's data (POE::Request's rsp scope): a hash ref that response
# handlers see as $ctx->rsp->data, released when the caller's side ends.
sub data {
    my ($self) = @_;
    return $self->{data} if $self->{data};
    my $p = $self->_p;
    my $h = {};
    my $id = StageBus::_register({ data => $h });
    StageBus::_check(StageBus::_C::sb_request_set_data($p, $id, StageBus::_fn('free')), 'request data');
    return $self->{data} = $h;
}

sub _free {
    my ($self) = @_;
    StageBus::_untrack($self);
    delete $self->{data};
    my $p = delete $self->{p};
    StageBus::_C::sb_request_free($p) if $p && $self->{pid} == $$;
    StageBus::_bury();
}

sub DESTROY {
    return if StageBus::_in_global_destruction();
    local ($@, $?);
    $_[0]->_free;
}

1;

__END__

=head1 NAME

StageBus::Request - a request to a stage (POE::Request)

=head1 SYNOPSIS

    use StageBus;

    my $loop = StageBus::Loop->new;
    my $knocker = StageBus::Stage->new(loop => $loop, name => 'Door', handlers => {
        do_emit   => sub { my ($ctx) = @_; $ctx->req->emit(args => { key => $ctx->args->{key} }) },
        do_recall => sub { my ($ctx) = @_; $ctx->req->return(type => 'hello', args => {}) },
    });
    my $stage_or_remote = $knocker;                 # or a StageBus::Remote
    my ($emits, $done);
    my $req = StageBus::Request->new(
        to         => $stage_or_remote,        # or stage => ...
        method     => 'do_emit',
        args       => { key => 'value' },
        on_emit    => sub { my ($ctx) = @_; $emits++; $ctx->rsp->recall(method => 'do_recall') },
        on_return  => sub { my ($ctx) = @_ },  # or a method name of the requesting stage
        on         => { error => sub { my ($ctx) = @_; die $ctx->rsp->error } },
        fallback   => sub { my ($ctx) = @_ },  # every other response type
        role       => 'knock',                 # responses of type T run on_knock_T
        timeout_ms => 5000,
        on_hello   => sub { my ($ctx) = @_; $done = $ctx->rsp->data->{key} },
    );
    $req->data->{key} = 309;                   # seen as $ctx->rsp->data->{key}
    $loop->run_until(sub { $done }, timeout_ms => 5000) or die 'no answer';
    print "$emits emit, then hello; rsp data $done\n";
    $req->cancel;                              # 0: it had ended

=head1 DESCRIPTION

Sends at once. Every request its caller does not cancel gets exactly
one final response: the callee's return (type chosen by the callee) or
an C<error> response (C<< $ctx->rsp->error >> is a L<StageBus::Error>:
C<no_such_method>, C<timeout>, C<publisher_gone>, C<handler_failed>,
...).

Requests made while a handler serves a request are its children:
cancelling, timing out or ending the parent cancels them, here and in
other processes.

C<timeout_ms> travels with the request: the callee reads the time left
with C<< $ctx->req->time_left_ms >>, in other processes too. A child
inherits its parent's deadline; its own C<timeout_ms> applies only when
it ends sooner. With neither, a request through a client gets the
client's default (L<StageBus::Client/set_default_timeout>, off by
default).

B<Dropping the object cancels the request> if it is still open, as in
POE::Request: keep it until its final response (a top-level variable,
or C<< $ctx->req->data >> from a handler). A request dropped before the
code that sent it returns to the loop never reaches its callee, local or
remote; later, the callee may have started it and then sees the cancel.

=head1 METHODS

C<new(...)>, C<id>, C<is_open>, C<cancel> (whether it was open),
C<data>, C<method>.

=cut
