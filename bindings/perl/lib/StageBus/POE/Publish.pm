package StageBus::POE::Publish;

use strict;
use warnings;

use POE::Kernel ();
use POE::Session ();
use Scalar::Util ();
use StageBus::POE::Args;
use StageBus::POE::Callback;

our $VERSION = '0.01';

# The event a published session is given: it runs one of its events
# (ARG0) with the args (ARG1) and the request handle (ARG2) from inside
# the session, so that a die in the event is seen here (a call of the
# active session runs the event without POE's exception handling).
use constant DELIVER => '_stagebus_deliver';

our %PUBLISHED;    # published name => the publication (kept until rescinded)
our %PENDING;      # refaddr => a publication waiting for its completion

sub _kernel { $POE::Kernel::poe_kernel }

# The id of a POE session given as a session, an alias or an id.
sub _session_id {
    my ($what, $session) = @_;
    if (!defined $session) {
        my $s = StageBus::POE::Callback::active_session()
            or StageBus::_croak(invalid_argument => "$what: 'session' is needed outside a POE session");
        return $s->ID;
    }
    my $s = _kernel()->alias_resolve($session)
        or StageBus::_croak(invalid_argument => "$what: there is no POE session '$session'");
    return $s->ID;
}

# Where a completion goes: (session id, event) or a code ref.
sub _completion {
    my ($what, $a) = @_;
    return { code => $a->{on_done}, tag => $a->{tag} } if $a->{on_done};
    return undef unless defined $a->{return_event};
    my $sid = _session_id($what, $a->{return_session});
    return { session => $sid, event => $a->{return_event}, tag => $a->{tag}, hold => StageBus::POE::Hold->new($sid) };
}

sub _complete {
    my ($c, %result) = @_;
    return unless $c;
    $result{tag} = $c->{tag};
    $result{success} = $result{error} ? 0 : 1;
    return $c->{code}->(\%result) if $c->{code};
    _kernel()->post($c->{session}, $c->{event}, \%result);
    delete $c->{hold};
}

# Keeps a POE session alive while stagebus owes it an event (a POE
# reference count, dropped with the object).
package StageBus::POE::Hold;

sub new {
    my ($class, $sid) = @_;
    return undef unless defined $sid && $POE::Kernel::poe_kernel->refcount_increment($sid, 'stagebus');
    return bless { sid => $sid, pid => $$ }, $class;
}

sub DESTROY {
    my ($self) = @_;
    return if ${^GLOBAL_PHASE} eq 'DESTRUCT' || $self->{pid} != $$;
    local ($@, $!);
    $POE::Kernel::poe_kernel->refcount_decrement($self->{sid}, 'stagebus');
}

package StageBus::POE::Publish;

sub new {
    my ($class, @args) = @_;
    my $a = StageBus::_named('StageBus::POE::Publish->new', \@args, 'client', 'name', 'events');
    my $client = $a->{client};
    ref $a->{events} eq 'ARRAY' && @{ $a->{events} }
        or StageBus::_croak(invalid_argument => 'StageBus::POE::Publish->new: events must be a non-empty array ref of event names');
    my $sid = _session_id('StageBus::POE::Publish->new', $a->{session});
    my $done = _completion('StageBus::POE::Publish->new', $a);
    my $name = $a->{name};
    my $self = bless {
        client       => $client,
        name         => $name,
        session_id   => $sid,
        events       => [@{ $a->{events} }],
        cancel_event => $a->{cancel_event},
    }, $class;
    StageBus::POE::Callback::add_state(_kernel()->alias_resolve($sid), DELIVER, \&_deliver_state);
    my $weak = $self;
    Scalar::Util::weaken($weak);
    {
        # The handlers call into the published session themselves.
        local $StageBus::POE::Callback::DISABLED = 1;
        $self->{stage} = StageBus::Stage->new(
            loop     => $client->loop,
            name     => $name,
            handlers => { map { my $ev = $_; ($ev => sub { $weak->_deliver($ev, $_[0]) if $weak }) } @{ $a->{events} } },
        );
        $self->{stage}->publish(
            client  => $client,
            session => $name,
            methods => $self->{events},
            on_done => sub {
                my ($err) = @_;
                # Published: kept under its name until rescinded. A
                # failed publish never replaces the publication it
                # collided with.
                my $me = $weak && delete $PENDING{ Scalar::Util::refaddr($weak) };
                $PUBLISHED{$name} = $me if $me && !$err;
                _complete($done, error => $err, session_name => $name);
            },
        );
    }
    $PENDING{ Scalar::Util::refaddr($self) } = $self;
    return $self;
}

sub name       { $_[0]{name} }
sub session_id { $_[0]{session_id} }
sub events     { @{ $_[0]{events} } }

# DELIVER, inside the published session.
sub _deliver_state {
    my ($kernel, $session, $event, $args, $h) = @_[POE::Session::KERNEL(), POE::Session::SESSION(),
        POE::Session::ARG0(), POE::Session::ARG1(), POE::Session::ARG2()];
    my $ret;
    my $ok = eval { $ret = $kernel->call($session, $event, @$args, $h); 1 };
    return $ok ? [1, $ret] : [0, $@];
}

# A request for method $event: run the event in the session.
sub _deliver {
    my ($self, $event, $ctx) = @_;
    my $h = StageBus::POE::Served->_new($ctx->req->keep, $event, $self);
    my @args = StageBus::POE::Args::from_args($ctx->args);
    my $r = _kernel()->call($self->{session_id}, DELIVER, $event, \@args, $h);
    if (ref $r ne 'ARRAY') {
        $h->fail(code => 'handler_failed', message => "the POE session $self->{session_id} publishing '$self->{name}' is gone");
        $self->rescind if ($PUBLISHED{ $self->{name} } // 0) == $self;
        return;
    }
    my ($ok, $value) = @$r;
    return unless $h->is_open;
    if (!$ok) {
        my $is_error = Scalar::Util::blessed($value) && $value->isa('StageBus::Error');
        my $msg = $is_error ? $value->message : "$value";
        chomp $msg;
        my $code = $is_error ? $value->code : 'handler_failed';
        $h->fail(code => $code, message => $msg);
        return;
    }
    # Kept by the event (in its heap, ...): answered later.
    return if Internals::SvREFCNT(%$h) > 1;
    my $answered = eval { $h->return(args => defined $value ? { result => $value } : undef); 1 };
    $h->fail(code => 'handler_failed', message => "cannot send what event '$event' returned: $@") if !$answered && $h->is_open;
}

sub rescind {
    my ($self, @args) = @_;
    my $a = StageBus::_named('rescind', \@args);
    my $done = _completion('rescind', $a);
    my $name = $self->{name};
    my $weak = $self;
    Scalar::Util::weaken($weak);
    local $StageBus::POE::Callback::DISABLED = 1;
    $self->{client}->rescind(session => $name, on_done => sub {
        my ($err) = @_;
        delete $PUBLISHED{$name} if !$err && $weak && ($PUBLISHED{$name} // 0) == $weak;
        _complete($done, error => $err, session_name => $name);
    });
    return;
}

# The publication of $name in this process, if any.
sub published { $PUBLISHED{ $_[1] } }

package StageBus::POE::Served;

our $VERSION = '0.01';

sub _new {
    my ($class, $served, $event, $pub) = @_;
    my $self = bless { served => $served, event => $event }, $class;
    if (defined(my $cancel_event = $pub->{cancel_event})) {
        my $sid = $pub->{session_id};
        my $weak = $self;
        Scalar::Util::weaken($weak);
        local $StageBus::POE::Callback::DISABLED = 1;
        $served->on_cancel(sub { POE::Kernel->post($sid, $cancel_event, $weak) });
    }
    return $self;
}

sub event        { $_[0]{event} }
sub served       { $_[0]{served} }
sub id           { $_[0]{served}->id }
sub caller_id    { $_[0]{served}->caller_id }
sub is_open      { $_[0]{served}->is_open }
sub time_left_ms { $_[0]{served}->time_left_ms }
sub data         { $_[0]{served}->data }

# emit / return: named (type => ..., args => {...}) as StageBus::Served;
# reply(@values): a return whose args are these values (as a post sends
# them).
sub emit   { my $self = shift; $self->{served}->emit(@_) }
sub return { my $self = shift; $self->{served}->return(@_) }
sub fail   { my $self = shift; $self->{served}->fail(@_) }
sub reply  { my $self = shift; $self->{served}->return(args => StageBus::POE::Args::to_args(@_)) }

1;

__END__

=head1 NAME

StageBus::POE::Publish - publish an existing POE session: its events become methods

=head1 SYNOPSIS

    use POE;
    use StageBus;
    use StageBus::POE;
    use StageBus::POE::Publish;

    my $loop   = StageBus::Loop->new;
    my $host   = StageBus::POE->new(loop => $loop);
    my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
    my $client = StageBus::Client->new(loop => $loop, address => $broker->address);

    POE::Session->create(inline_states => {
        _start => sub {
            $_[KERNEL]->alias_set('foo');
            $_[HEAP]{pub} = StageBus::POE::Publish->new(
                client       => $client,
                name         => 'FooSession',
                events       => [qw(foo slow)],
                cancel_event => 'cancelled',
                return_event => 'published',
            );
        },
        # An ordinary event: ARG0.. are the caller's values, the last
        # argument the request handle.
        foo => sub { my ($word, $req) = @_[ARG0, $#_]; return "foo($word)" },
        slow => sub { my $req = $_[-1]; $_[HEAP]{later} = $req; $req->emit(type => 'started') },
        cancelled => sub { delete $_[HEAP]{later} },
        published => sub {
            my $r = $_[ARG0];
            die "publish: $r->{error}" unless $r->{success};
            our $remote;
            $client->subscribe(session => 'FooSession', on_subscribed => sub {
                (my $err, $remote) = @_;
                our $req = $remote->request(method => 'foo', args => { ARG0 => 'bar' },
                    on_return => sub {
                        print $_[0]->args->{result}, "\n";    # foo(bar)
                        $host->shutdown;
                        $poe_kernel->alias_remove('foo');       # runs in this session
                    });
            });
        },
    });
    POE::Kernel->run;

=head1 DESCRIPTION

C<new> publishes an existing POE session (C<session>: a session, an
alias or an id; default: the active session) under C<name>: each event
of C<events> becomes a method. A request for method C<foo> runs the
event C<foo> inside the session (by a POE C<call>, so C<yield>,
C<delay> and C<post> from it act on the session) with:

=over

=item *

the request's args as the event's arguments (L<StageBus::POE::Args>:
C<ARG0>, C<ARG1>, ... as positional values, other args as one hash ref
in C<ARG0>);

=item *

a request handle (StageBus::POE::Served) as the B<last> argument
(C<$_[-1]>), so that unchanged events reading C<ARG0> .. still work.
Through it the event answers: C<emit(type =E<gt> ..., args =E<gt> {...})>,
C<return(...)>, C<reply(@values)> (a return of positional values),
C<fail(code =E<gt> ..., message =E<gt> ...)>; also C<id>, C<caller_id>,
C<is_open>, C<time_left_ms>, C<data>, C<event>.

=back

An event that returns without answering and without keeping the handle
(in its heap, say) answers with a return whose args are
C<{ result =E<gt> $value }> (its return value; no args when undef). An
event that keeps the handle answers later, through it. An event that
C<die>s fails the request with C<handler_failed> and the error (or the
code of a L<StageBus::Error> it died with); the session lives on.

With C<cancel_event>, a cancel by the caller posts that event to the
session with the handle as C<ARG0> (undef when nothing kept it).

The completion goes, as a POE event, to C<return_session> (default: the
session that called C<new>) as C<return_event>, with one hash ref:
C<success>, C<error> (a L<StageBus::Error> or undef), C<session_name>
and the C<tag> given (never sent anywhere). C<on_done =E<gt> sub { my
($result) = @_ }> is the alternative to an event.

The publication is kept (C<StageBus::POE::Publish-E<gt>published($name)>)
until C<rescind(return_event =E<gt> ..., tag =E<gt> ...)> completes. A
request reaching a session that has ended fails with
C<handler_failed>, and the publication is rescinded.

=cut
