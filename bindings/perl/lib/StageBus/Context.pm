package StageBus::Context;

use strict;
use warnings;

use FFI::Platypus::Buffer ();
use Scalar::Util ();

our $VERSION = '0.01';

# Runs a handler record with a fresh context; returns the handler's
# status for the library (always 0: a die is answered here).
sub _run {
    my ($rec, $ctxp) = @_;
    return 0 unless $rec;
    my $ctx = bless { p => $ctxp, loop => $rec->{loop} }, __PACKAGE__;
    my $rc = 0;
    {
        local $@;
        my $ok = eval { $rec->{code}->($ctx); 1 };
        $rc = _died($ctx, $@) unless $ok;
    }
    $ctx->_invalidate;
    return $rc;
}

# A handler died: fail the request it serves with the error, or, with no
# open request, report it.
sub _died {
    my ($ctx, $err) = @_;
    my $p = $ctx->{p};
    my $name = StageBus::_from_c(StageBus::_C::sb_ctx_name($p));
    my ($code, $msg);
    if (Scalar::Util::blessed($err) && $err->isa('StageBus::Error')) {
        ($code, $msg) = ($err->code, $err->message);
        $code = $StageBus::Error::CODE_OF{handler_failed} unless $code >= 1 && $code <= 99;
    }
    else {
        ($code, $msg) = ($StageBus::Error::CODE_OF{handler_failed}, "$err");
    }
    chomp $msg;
    my $req = StageBus::_C::sb_ctx_req($p);
    if ($req && StageBus::_C::sb_served_is_open($req)) {
        (my $c = $msg) =~ s/\0/\\0/g;
        utf8::encode($c);
        return 0 if StageBus::_C::sb_served_fail($req, $code, $c) == 0;
    }
    StageBus::_diagnose("handler '$name' died with no open request to answer: $msg");
    return 0;
}

sub _invalidate {
    my ($self) = @_;
    $self->{p} = undef;
    for (qw(req rsp stage)) {
        $self->{$_}->_invalidate if $self->{$_};
    }
}

sub _p {
    my ($self) = @_;
    return $self->{p} if defined $self->{p};
    StageBus::_croak(invalid_state => 'a handler context was used after its handler returned');
}

# The method (downward) or response type (upward) being handled.
sub name {
    my ($self) = @_;
    return $self->{name} //= StageBus::_from_c(StageBus::_C::sb_ctx_name($self->_p));
}

# The message's args (a hash ref, decoded once).
sub args {
    my ($self) = @_;
    return $self->{args} //= StageBus::_decode_args(StageBus::_C::sb_ctx_args($self->_p));
}

# The request being served (the callee's view), or undef.
sub req {
    my ($self) = @_;
    return $self->{req} if exists $self->{req};
    my $s = StageBus::_C::sb_ctx_req($self->_p);
    return $self->{req} = $s ? StageBus::Served->_borrow($s, $self->{loop}) : undef;
}

# The response being handled (in response handlers), or undef.
sub rsp {
    my ($self) = @_;
    return $self->{rsp} if exists $self->{rsp};
    my $r = StageBus::_C::sb_ctx_rsp($self->_p);
    return $self->{rsp} = $r ? StageBus::Response->_borrow($r) : undef;
}

# The stage whose handler runs, or undef (top-level response handlers).
sub stage {
    my ($self) = @_;
    return $self->{stage} if exists $self->{stage};
    my $s = StageBus::_C::sb_ctx_stage($self->_p);
    return $self->{stage} = $s ? StageBus::Stage->_borrow($s, $self->{loop}) : undef;
}

sub loop { $_[0]{loop} }

package StageBus::Served;

our $VERSION = '0.01';

sub _borrow {
    my ($class, $p, $loop) = @_;
    return bless { p => $p, loop => $loop, borrowed => 1 }, $class;
}

sub _invalidate { $_[0]{p} = undef }

sub _p {
    my ($self) = @_;
    $self->{loop}->_p if $self->{loop};
    return $self->{p} if defined $self->{p};
    StageBus::_croak(invalid_state => $self->{borrowed}
        ? 'a served request was used after its handler returned (keep it with ->keep)'
        : 'the served request reference was freed');
}

# The request's id in this process (distinct among live requests); the
# caller's own id of it (unique only in the caller's process).
sub id        { StageBus::_C::sb_served_id($_[0]->_p) }
sub caller_id { StageBus::_C::sb_served_caller_id($_[0]->_p) }
sub is_open { StageBus::_C::sb_served_is_open($_[0]->_p) ? 1 : 0 }
# False for a one-way request (StageBus::Remote::post): its answers are
# dropped.
sub expects_answer { StageBus::_C::sb_served_expects_answer($_[0]->_p) ? 1 : 0 }

# Who calls, for a request that came through a broker: a hash ref with
# connection, and where known uid, gid, pid (a Unix socket), identity
# (the name of the token it presented) and client_name (the name it gave
# itself); undef for a request from this process.
sub caller {
    my ($self) = @_;
    my $p = $self->_p;
    my $conn = StageBus::_C::sb_served_caller_connection($p);
    return undef unless $conn;
    my %c = (connection => $conn);
    for my $f (qw(uid gid pid)) {
        my $v;
        my $fn = \&{"StageBus::_C::sb_served_caller_$f"};
        $c{$f} = $v if $fn->($p, \$v) == 0;
    }
    for my $f (qw(identity client_name)) {
        my $fn = \&{"StageBus::_C::sb_served_caller_$f"};
        my $buf = "\0" x 65536;
        my ($ptr, $len) = FFI::Platypus::Buffer::scalar_to_buffer($buf);
        next unless $fn->($p, $ptr, $len) == 0;
        $buf =~ s/\0.*//s;
        $c{$f} = StageBus::_from_c($buf);
    }
    return \%c;
}

# Milliseconds left before the caller's deadline (0 once it passed), or
# undef without one.
sub time_left_ms {
    my $ms;
    StageBus::_check(StageBus::_C::sb_served_time_left_ms($_[0]->_p, \$ms), 'time_left_ms');
    return $ms < 0 ? undef : $ms;
}

sub _answer {
    my ($self, $fn, $what, @args) = @_;
    my $a = StageBus::_named($what, \@args);
    my $p = $self->_p;
    my $type = StageBus::_to_c($a->{type}, 'the response type');
    StageBus::_with_args($a->{args}, sub { StageBus::_check($fn->($p, $type, $_[0]), $what) });
    return;
}

# An interim response (type default 'emit').
sub emit { my $self = shift; $self->_answer(\&StageBus::_C::sb_served_emit, 'emit', @_) }

# The final response (type default 'return').
sub return { my $self = shift; $self->_answer(\&StageBus::_C::sb_served_return, 'return', @_) }

# Ends the request with an error.
sub fail {
    my ($self, @args) = @_;
    my $a = StageBus::_named('fail', \@args);
    my $e = StageBus::Error->new(code => $a->{code} // 'handler_failed', message => $a->{message} // '');
    StageBus::_check(
        StageBus::_C::sb_served_fail($self->_p, $e->code, StageBus::_to_c($e->message, 'the message')), 'fail');
    return;
}

# Runs $code if the caller cancels before the request is answered.
sub on_cancel {
    my ($self, $code) = @_;
    my $p = $self->_p;
    my @cb = StageBus::_cb_args(notify => $code, loop => $self->{loop}, what => 'on_cancel');
    StageBus::_check(StageBus::_C::sb_served_on_cancel($p, @cb), 'on_cancel');
    return;
}

# The callee's data for this request (POE::Request's req scope): a hash
# ref seen again by recalls, released when the callee's side ends.
sub data {
    my ($self) = @_;
    return StageBus::_data_slot(\&StageBus::_C::sb_served_data, \&StageBus::_C::sb_served_set_data, $self->_p);
}

# An owned reference, to answer after the handler returned.
sub keep {
    my ($self) = @_;
    my $o = StageBus::_C::sb_served_ref($self->_p)
        or StageBus::_croak(invalid_state => StageBus::_from_c(StageBus::_C::sb_last_error()));
    my $loop = $self->{loop};
    return StageBus::_track(bless { p => $o, loop => $loop, pid => $$, owned => 1 }, ref $self);
}

sub _free {
    my ($self) = @_;
    return unless $self->{owned};
    StageBus::_untrack($self);
    my $p = delete $self->{p};
    StageBus::_C::sb_served_free($p) if $p && $self->{pid} == $$;
    StageBus::_bury();
}

sub DESTROY {
    return if StageBus::_in_global_destruction();
    local ($@, $?);
    $_[0]->_free;
}

package StageBus::Response;

our $VERSION = '0.01';

sub _borrow {
    my ($class, $p) = @_;
    return bless { p => $p }, $class;
}

sub _invalidate { $_[0]{p} = undef }

sub _p {
    my ($self) = @_;
    return $self->{p} if defined $self->{p};
    StageBus::_croak(invalid_state => 'a response was used after its handler returned');
}

sub id       { StageBus::_C::sb_response_id($_[0]->_p) }
sub type     { $_[0]{type} //= StageBus::_from_c(StageBus::_C::sb_response_kind($_[0]->_p)) }
sub is_final { StageBus::_C::sb_response_is_final($_[0]->_p) ? 1 : 0 }

# For an error response, a StageBus::Error; else undef.
sub error {
    my ($self) = @_;
    my $code = StageBus::_C::sb_response_error($self->_p);
    return undef unless $code;
    return StageBus::Error->new(code => $code,
        message => StageBus::_from_c(StageBus::_C::sb_response_message($self->_p)), async => 1);
}

# The caller's data of the request (StageBus::Request::data), or undef.
sub data {
    my ($self) = @_;
    my $id = StageBus::_C::sb_response_data($self->_p);
    my $rec = $id && $StageBus::REG{$id};
    return $rec ? $rec->{data} : undef;
}

# Answers an emit: runs $method of the callee within the same request.
sub recall {
    my ($self, @args) = @_;
    my $a = StageBus::_named('recall', \@args, 'method');
    my $p = $self->_p;
    my $m = StageBus::_to_c($a->{method}, 'the method');
    StageBus::_with_args($a->{args},
        sub { StageBus::_check(StageBus::_C::sb_response_recall($p, $m, $_[0]), "recall '$a->{method}'") });
    return;
}

# Cancels the request from inside one of its response handlers.
sub cancel { StageBus::_C::sb_response_cancel($_[0]->_p) ? 1 : 0 }

1;

__END__

=head1 NAME

StageBus::Context, StageBus::Served, StageBus::Response - what a handler sees

=head1 SYNOPSIS

    use StageBus;

    my $loop = StageBus::Loop->new;
    our %name_of;
    my $stage = StageBus::Stage->new(loop => $loop, name => 'Greeter', handlers => {
        greet => sub {
            my ($ctx) = @_;
            $ctx->name;                 # 'greet': the method, or the response type
            $ctx->args;                 # hash ref
            $ctx->stage;                # StageBus::Stage or undef
            my $req = $ctx->req;        # StageBus::Served: the callee's side
            $req->on_cancel(sub { });
            $req->time_left_ms;         # undef: no deadline
            $req->expects_answer;       # 0 for a one-way request
            $req->data->{seen}++;       # kept for the recalls of this request
            $req->emit(type => 'ask', args => { question => 'name?' });
        },
        answer => sub {
            my ($ctx) = @_;
            my $later = $ctx->req->keep;               # answer after returning
            $loop->timer(after_ms => 1, cb => sub {
                $later->return(args => { greeting => "Hello, $name_of{$later}!" });
            });
            $name_of{$later} = $ctx->args->{name};
        },
        nope => sub { $_[0]->req->fail(code => 'no_such_method', message => 'nope') },
    });

    my $greeting;
    my $req = $stage->request(method => 'greet',
        on_ask => sub {
            my ($ctx) = @_;
            my $rsp = $ctx->rsp;        # StageBus::Response: the caller's side
            $rsp->type; $rsp->id; $rsp->is_final; $rsp->error; $rsp->data;
            $rsp->recall(method => 'answer', args => { name => 'Ann' });
        },
        on_return => sub { $greeting = $_[0]->args->{greeting} });
    $loop->run_until(sub { $greeting }, timeout_ms => 5000) or die 'no answer';
    print "$greeting\n";

=head1 DESCRIPTION

A request's timeout (C<timeout_ms> of L<StageBus::Request>) travels
with it, also to other programs: C<time_left_ms> of the request being
served reads the milliseconds left (C<undef> when the caller set none).
Requests made while serving it inherit that deadline; their own
C<timeout_ms> applies only when it ends sooner, and a child whose
inherited deadline passes fails with C<timeout>.

The context and the objects it hands out are valid only during the
handler; using them later dies with C<invalid_state>. C<keep> gives an
owned L<StageBus::Served> that stays valid (it is freed with its
object). A request with no kept object, no emit sent and no open
request made on its behalf cannot be answered any more: it ends with
an C<unanswered> error for its caller when its handler returns, or when
its last kept object is dropped.

=cut
