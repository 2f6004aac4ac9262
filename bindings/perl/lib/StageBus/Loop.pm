package StageBus::Loop;

use strict;
use warnings;

use Config ();
use Scalar::Util ();
use Time::HiRes ();

our $VERSION = '0.01';

sub new {
    my ($class, @args) = @_;
    StageBus::_named('StageBus::Loop->new', \@args);
    my $p;
    StageBus::_check(StageBus::_C::sb_loop_new(\$p), 'sb_loop_new');
    return StageBus::_track(bless { p => $p, pid => $$, dispatching => 0, stopped => 0 }, $class);
}

sub _p {
    my ($self) = @_;
    return $self->{p} if defined $self->{p};
    StageBus::_croak(invalid_state => 'the loop was destroyed');
}

sub alive { defined $_[0]{p} }

sub fd { StageBus::_C::sb_loop_fd($_[0]->_p) }

sub timeout_ms { StageBus::_C::sb_loop_timeout_ms($_[0]->_p) }

sub dispatch {
    my ($self) = @_;
    my $p = $self->_p;
    $self->{dispatching}
        and StageBus::_croak(invalid_state => 'the loop is already dispatching (a nested run from one of its callbacks)');
    local $self->{dispatching} = 1;
    my $st = StageBus::_C::sb_loop_dispatch($p);
    StageBus::_check($st, 'dispatch');
    return;
}

sub in_dispatch { $_[0]{dispatching} }

# SB_FD_READ and SB_FD_WRITE of the C API.
use constant { FD_READ => 1, FD_WRITE => 2 };

# Returns the watch's number: unwatch_fds($number) ends that watch only,
# not one that replaced it.
sub watch_fds {
    my ($self, $cb) = @_;
    my $p = $self->_p;
    my ($fn, $user, $free) = StageBus::_cb_args(watch => $cb, loop => $self, what => 'watch_fds');
    StageBus::_check(StageBus::_C::sb_loop_watch_fds($p, $fn, $user, $free), 'watch_fds');
    return $self->{watch} = ($self->{watches} = ($self->{watches} // 0) + 1);
}

sub unwatch_fds {
    my ($self, $which) = @_;
    return if defined $which && ($self->{watch} // 0) != $which;
    StageBus::_check(StageBus::_C::sb_loop_unwatch_fds($self->_p), 'unwatch_fds');
    delete $self->{watch};
    return;
}

sub dispatch_fd {
    my ($self, $fd, $events) = @_;
    my $p = $self->_p;
    defined $fd && $fd =~ /\A[0-9]+\z/
        or StageBus::_croak(invalid_argument => 'dispatch_fd needs an fd (a whole number)');
    defined $events && $events =~ /\A[0-9]+\z/ && $events <= 0xFFFF_FFFF
        or StageBus::_croak(invalid_argument => 'dispatch_fd needs events (FD_READ, FD_WRITE or both)');
    $fd <= 0x7FFF_FFFF
        or StageBus::_croak(invalid_argument => "dispatch_fd: fd $fd is out of range");
    $self->{dispatching}
        and StageBus::_croak(invalid_state => 'the loop is already dispatching (a nested run from one of its callbacks)');
    local $self->{dispatching} = 1;
    StageBus::_check(StageBus::_C::sb_loop_dispatch_fd($p, $fd, $events), 'dispatch_fd');
    return;
}

# Signal names and numbers of this system ('TERM' <=> 15).
my (%SIGNAL_NUMBER, %SIGNAL_NAME);
{
    my @names = split ' ', $Config::Config{sig_name};
    my @numbers = split ' ', $Config::Config{sig_num};
    for my $i (0 .. $#names) {
        $SIGNAL_NUMBER{$names[$i]} //= $numbers[$i];
        $SIGNAL_NAME{$numbers[$i]} //= $names[$i];
    }
}

sub _signal_name { $SIGNAL_NAME{$_[0]} // $_[0] }

sub _signal_number {
    my ($signal) = @_;
    return $signal if defined $signal && $signal =~ /\A[0-9]+\z/ && $signal <= 0x7FFF_FFFF;
    my $name = defined $signal ? $signal =~ s/\ASIG//r : '';
    return $SIGNAL_NUMBER{$name} if $name ne '' && $name ne 'ZERO' && exists $SIGNAL_NUMBER{$name};
    StageBus::_croak(invalid_argument => 'on_unix_signals: ' . ($signal // 'undef') . ' is not a signal name or number');
}

# Takes the signals (names such as 'TERM' or numbers) on the loop: the
# code runs with the signal's name when one arrives.
sub on_unix_signals {
    my ($self, $signals, $cb) = @_;
    my $p = $self->_p;
    ref $signals eq 'ARRAY'
        or StageBus::_croak(invalid_argument => 'on_unix_signals needs a list of signals (an array ref)');
    my @numbers = map { _signal_number($_) } @$signals;
    my ($fn, $user, $free) = StageBus::_cb_args(unix_signal => $cb, loop => $self, what => 'on_unix_signals');
    StageBus::_check(
        StageBus::_C::sb_loop_on_unix_signals($p, \@numbers, scalar @numbers, $fn, $user, $free),
        'on_unix_signals');
    return;
}

sub clear_unix_signals {
    my ($self) = @_;
    StageBus::_check(StageBus::_C::sb_loop_clear_unix_signals($self->_p), 'clear_unix_signals');
    return;
}

# Waits for the fd (at most $limit_ms, undef: no limit besides the
# loop's own timeout), then runs one turn. Perl signal handlers run
# while waiting (select returns on EINTR).
sub _turn {
    my ($self, $limit_ms) = @_;
    my $t = $self->timeout_ms;
    $t = $limit_ms if defined $limit_ms && ($t < 0 || $t > $limit_ms);
    if ($t != 0) {
        my $rin = '';
        vec($rin, $self->fd, 1) = 1;
        select(my $rout = $rin, undef, undef, $t < 0 ? undef : $t / 1000);
    }
    $self->dispatch;
}

sub run {
    my ($self) = @_;
    $self->{stopped} = 0;
    $self->_turn(undef) until $self->{stopped};
    return;
}

sub run_for {
    my ($self, $ms) = @_;
    defined $ms && $ms >= 0 or StageBus::_croak(invalid_argument => 'run_for needs a number of milliseconds');
    my $deadline = Time::HiRes::time() + $ms / 1000;
    $self->{stopped} = 0;
    while (!$self->{stopped}) {
        my $left = ($deadline - Time::HiRes::time()) * 1000;
        last if $left <= 0;
        $self->_turn(int($left) + 1);
    }
    return;
}

sub run_until {
    my ($self, $cond, @args) = @_;
    ref $cond eq 'CODE' or StageBus::_croak(invalid_argument => 'run_until needs a code ref');
    my $a = StageBus::_named('run_until', \@args);
    my $deadline = defined $a->{timeout_ms} ? Time::HiRes::time() + $a->{timeout_ms} / 1000 : undef;
    $self->{stopped} = 0;
    while (1) {
        return 1 if $cond->();
        my $left;
        if (defined $deadline) {
            $left = ($deadline - Time::HiRes::time()) * 1000;
            return !!$cond->() if $left <= 0;
        }
        return !!$cond->() if $self->{stopped};
        $self->_turn(defined $left ? int($left) + 1 : undef);
    }
}

sub stop {
    my ($self) = @_;
    $self->{stopped} = 1;
    StageBus::_C::sb_loop_stop($self->{p}) if defined $self->{p};
    return;
}

sub timer {
    my ($self, @args) = @_;
    my $a = StageBus::_named('timer', \@args, 'cb');
    my $ms = $a->{after_ms} // 0;
    my $p = $self->_p;
    my ($fn, $user, $free) = StageBus::_cb_args(loop_fn => $a->{cb}, loop => $self);
    my $id;
    StageBus::_check(StageBus::_C::sb_loop_add_timer($p, $ms, $fn, $user, $free, \$id), 'timer');
    return $id;
}

sub cancel_timer {
    my ($self, $id) = @_;
    my $st = StageBus::_C::sb_loop_cancel_timer($self->_p, $id);
    return 0 if $st == $StageBus::Error::CODE_OF{not_found};
    StageBus::_check($st, 'cancel_timer');
    return 1;
}

sub destroy {
    my ($self) = @_;
    $self->{dispatching}
        and StageBus::_croak(invalid_state => 'cannot destroy the loop from inside its own dispatch');
    $self->_free;
    return;
}

sub _free {
    my ($self) = @_;
    StageBus::_untrack($self);
    # A host watching the fds is told to drop them (freeing the loop
    # would not tell it): its watchers and their duplicates go now.
    StageBus::_C::sb_loop_unwatch_fds($self->{p}) if $self->{p} && delete $self->{watch} && $self->{pid} == $$;
    my $p = delete $self->{p};
    StageBus::_C::sb_loop_free($p) if $p && $self->{pid} == $$;
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

StageBus::Loop - the stagebus event loop

=head1 SYNOPSIS

    use StageBus;

    my $loop = StageBus::Loop->new;
    my $id = $loop->timer(after_ms => 100, cb => sub { my ($loop) = @_; $loop->stop });
    $loop->run;                                   # until ->stop
    $loop->run_for(50);                           # at most 50 ms (or ->stop)
    my $done;
    $loop->timer(after_ms => 10, cb => sub { $done = 1 });
    my $ok = $loop->run_until(sub { $done }, timeout_ms => 5000);
    print "timer fired: $ok\n";

=head1 DESCRIPTION

A loop owns everything made on it; callbacks run only inside its
C<dispatch> (and so inside C<run>, C<run_for> and C<run_until>, which
wait on C<fd> with C<select> and dispatch, so that Perl signal handlers
run while the loop waits: C<$SIG{TERM} = sub { $loop-E<gt>stop }> works).

To run inside another event loop, watch C<fd> for reading and arm a
timer of C<timeout_ms> (-1: none, 0: now), call C<dispatch> when either
fires and ask for the timeout again: L<StageBus::AnyEvent> and
L<StageBus::POE> do exactly that.

=head1 METHODS

=over

=item new

=item run, run_for($ms), run_until($cond, timeout_ms => $ms)

C<run_until> returns whether C<$cond> became true (it is checked before
every turn); without C<timeout_ms> it waits as long as needed. All three
return early after C<stop>.

=item stop

=item dispatch

One non-blocking turn. Calling it (or a run method) from inside one of
the loop's own callbacks dies with C<invalid_state>.

=item fd, timeout_ms, in_dispatch, alive

=item watch_fds(sub { my ($fd, $events) = @_ }), unwatch_fds, dispatch_fd($fd, $events)

For a host that watches several fds: instead of C<fd>, the host is told
every fd the loop waits on, at once and whenever one comes, goes
(C<$events> 0) or changes; C<$events> is C<FD_READ>, C<FD_WRITE> or
both (C<StageBus::Loop::FD_READ> is 1, C<FD_WRITE> 2). The host watches
each as told, level-triggered, and calls C<dispatch_fd($fd, $events)>
when one is ready (a hang-up counts as readable) and C<dispatch> when
C<timeout_ms> passes. That spares the loop the second wait of every
wake-up. C<unwatch_fds> goes back to C<fd> (the callback is told to drop
every fd first); C<dispatch_fd> without C<watch_fds> dies with
C<invalid_state>. C<watch_fds> returns the watch's number, and
C<unwatch_fds($number)> ends that watch only, not one that replaced it;
C<destroy> ends it too, telling the callback to drop every fd. A source
whose input waits (its peer has too much output queued) is not to be
watched for reading meanwhile: the callback is told so, and told again.

=item on_unix_signals([qw(TERM INT)], sub { my ($name) = @_ }), clear_unix_signals

Takes the Unix signals listed (names with or without C<SIG>, or numbers)
on the loop instead of their default action or a C<%SIG> handler: the
code runs on the loop, with the signal's name (C<TERM>), whenever one
arrives, so it may C<stop> the loop or close clients gracefully. The
signals are blocked in the program and read from a signalfd the loop
waits on (child processes inherit that: unblock them in a child that
should get them). A second call replaces the first without a gap;
C<clear_unix_signals> and C<destroy> end it, and the signals have their
default action (or C<%SIG> handler) again. Dies with
C<invalid_argument> for an empty list, an unknown name, or C<KILL>,
C<STOP>, C<SEGV>, C<BUS>, C<FPE>, C<ILL>.

=item timer(after_ms => $ms, cb => sub { my ($loop) = @_ })

Returns an id for C<cancel_timer($id)>, which returns whether the timer
was still pending.

=item destroy

Frees the loop now (C<DESTROY> does it otherwise, once nothing made on
the loop holds it). Objects made on it can then only be dropped.

=back

=cut
