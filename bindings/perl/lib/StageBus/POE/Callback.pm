package StageBus::POE::Callback;

use strict;
use warnings;

use POE::Kernel ();
use POE::Session ();

our $VERSION = '0.01';

# The event every session that registers a stagebus callback gets: it
# runs a code ref inside that session (so $poe_kernel->yield, delay and
# post from the code act on it).
use constant STATE => '_stagebus_callback';

our %HOST_SESSIONS;    # ids of StageBus::POE's own sessions
our $DISABLED = 0;     # set (local) to register a callback as it is
my %INJECTED;          # session id => the session had STATE added

sub _kernel { $POE::Kernel::poe_kernel }

# The active session, unless it is the kernel or a StageBus::POE host.
sub active_session {
    my $k = _kernel() or return undef;
    my $s = $k->get_active_session;
    return undef if !$s || !ref $s || $s->isa('POE::Kernel');
    return undef if $HOST_SESSIONS{ $s->ID };
    return $s;
}

# Adds the state $name (code $code) to $session, active or not.
sub add_state {
    my ($session, $name, $code) = @_;
    my $active = _kernel()->get_active_session;
    if ($active && $active == $session) {
        _kernel()->state($name, $code);
    }
    elsif ($session->can('_register_state')) {
        # POE::Kernel->state acts on the active session only; a session
        # reached from outside is given the state the way it does.
        $session->_register_state($name, $code);
    }
    else {
        StageBus::_croak(invalid_state => "cannot add a stagebus event to POE session " . $session->ID
            . ' (' . ref($session) . ')');
    }
    return;
}

# Adds STATE to $session (once); its id.
sub inject {
    my ($session) = @_;
    my $id = $session->ID;
    return $id if $INJECTED{$id};
    add_state($session, STATE, \&_state);
    $INJECTED{$id} = 1;
    return $id;
}

# STATE: runs ARG0 with the args in ARG1 (an array ref), inside an eval;
# returns [1, \@results] or [0, $error].
sub _state {
    my ($code, $args) = @_[POE::Session::ARG0(), POE::Session::ARG1()];
    my @r;
    my $ok = eval { @r = $code->(@$args); 1 };
    return $ok ? [1, \@r] : [0, $@];
}

# Runs $code->(@args) in the POE session $id: at once when it is the
# active one, else through a POE call of STATE. A session that is gone
# (or a kernel that is not running any more) runs it where it is.
# Returns what $code returned (its last value); dies with its error.
sub run_in {
    my ($id, $code, @args) = @_;
    my $k = _kernel();
    my $active = $k && $k->get_active_session;
    return $code->(@args) if !$k || ($active && ref $active && !$active->isa('POE::Kernel') && $active->ID == $id);
    my $r = $k->call($id, STATE, $code, \@args);
    return $code->(@args) unless ref $r eq 'ARRAY';
    die $r->[1] unless $r->[0];
    return $r->[1][-1];
}

# The code ref to register for a callback made now: one that runs in the
# active POE session (when there is one besides the hosts'), else $code.
sub wrap {
    my ($code) = @_;
    return $code if $DISABLED;
    my $session = active_session() or return $code;
    my $id = inject($session);
    return sub { run_in($id, $code, @_) };
}

# Installed when StageBus::POE is loaded: every callback registered from
# inside a POE session runs in that session.
$StageBus::WRAP_CALLBACK = \&wrap;

1;

__END__

=head1 NAME

StageBus::POE::Callback - stagebus callbacks run in the POE session that registered them

=head1 SYNOPSIS

    use POE;
    use StageBus;
    use StageBus::POE;    # loads this module

    my $loop = StageBus::Loop->new;
    my $host = StageBus::POE->new(loop => $loop);
    my $stage = StageBus::Stage->new(loop => $loop, name => 'Echo',
        handlers => { echo => sub { $_[0]->req->return(args => $_[0]->args) } });
    my $got;
    POE::Session->create(inline_states => {
        _start => sub {
            our $req = $stage->request(method => 'echo', args => { n => 1 },
                # Runs in this session: the yield reaches 'answered' here.
                on_return => sub { $poe_kernel->yield(answered => $_[0]->args->{n}) });
        },
        answered => sub { $got = $_[ARG0]; $host->shutdown },
    });
    POE::Kernel->run;
    print "got $got\n";

=head1 DESCRIPTION

A stagebus loop hosted by L<StageBus::POE> runs its callbacks from its
own POE session. With this module (loaded by L<StageBus::POE>) every
callback registered while a POE session is active (request response
handlers, stage handlers, completions, timers) runs inside I<that>
session, through a POE C<call> of the event C<_stagebus_callback> the
session is given: C<< $poe_kernel->yield >>, C<delay>, C<post> and
C<< $_[KERNEL] >> of the events they lead to act on the session that
made the request. Callbacks registered outside any session (or from a
host's own session) run as before; a callback whose session has ended
runs without one. L<StageBus::AnyEvent> is not affected.

=head1 FUNCTIONS

C<wrap($code)> (what the binding calls for every registration),
C<run_in($session_id, $code, @args)>, C<active_session()>,
C<inject($session)>, C<add_state($session, $event, $code)>; C<local $StageBus::POE::Callback::DISABLED = 1>
registers callbacks unchanged.

=cut
