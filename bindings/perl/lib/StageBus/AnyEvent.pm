package StageBus::AnyEvent;

use strict;
use warnings;

use AnyEvent ();
use Scalar::Util ();

our $VERSION = '0.01';

sub new {
    my ($class, @args) = @_;
    my $a = StageBus::_named('StageBus::AnyEvent->new', \@args, 'loop');
    my $loop = $a->{loop};
    my $self = bless { loop => $loop }, $class;
    my $weak = $self;
    Scalar::Util::weaken($weak);
    if ($a->{fd_by_fd}) {
        # One AnyEvent watcher per fd and direction, as the loop tells.
        $self->{fds} = {};
        $self->{watching} = $loop->watch_fds(sub { $weak->_watch(@_) if $weak });
    }
    else {
        # A duplicate of the loop's fd: the watcher may close its handle
        # without closing the library's epoll fd.
        open(my $fh, '<&', $loop->fd)
            or StageBus::_croak(io => "cannot duplicate the loop's fd: $!");
        $self->{fh} = $fh;
        $self->{io} = AnyEvent->io(fh => $fh, poll => 'r', cb => sub { $weak->_dispatch if $weak });
    }
    $self->_arm;
    return $self;
}

# The loop's watch function: (re)creates or drops the watchers of `$fd`.
sub _watch {
    my ($self, $fd, $events) = @_;
    my $weak = $self;
    Scalar::Util::weaken($weak);
    my %w;
    for ([r => StageBus::Loop::FD_READ], [w => StageBus::Loop::FD_WRITE]) {
        my ($poll, $bit) = @$_;
        next unless $events & $bit;
        $w{$poll} = AnyEvent->io(fh => $fd, poll => $poll,
            cb => sub { $weak->_dispatch($fd, $bit) if $weak });
    }
    if (%w) { $self->{fds}{$fd} = \%w } else { delete $self->{fds}{$fd} }
}
sub loop { $_[0]{loop} }

sub _dispatch {
    my ($self, $fd, $events) = @_;
    my $loop = $self->{loop};
    return unless $loop->alive;
    # A nested AnyEvent wait inside one of the loop's callbacks must not
    # dispatch it again.
    return if $loop->in_dispatch;
    if (defined $fd) {
        $loop->dispatch_fd($fd, $events);
    }
    else {
        $loop->dispatch;
    }
    $self->_arm;
}

# The library's timeout, asked again after every dispatch.
sub _arm {
    my ($self) = @_;
    my $loop = $self->{loop};
    return unless $loop->alive && ($self->{io} || $self->{watching});
    my $t = $loop->timeout_ms;
    if ($t < 0) {
        delete $self->{timer};
        return;
    }
    my $weak = $self;
    Scalar::Util::weaken($weak);
    $self->{timer} = AnyEvent->timer(after => $t / 1000, cb => sub { $weak->_dispatch if $weak });
}

# Stops watching (dropping the object does it too).
sub stop {
    my ($self) = @_;
    if (my $watch = delete $self->{watching}) {
        my $loop = $self->{loop};
        # Only its own watch: a later host's stays.
        $loop->unwatch_fds($watch) if $loop && $loop->alive;
        delete $self->{fds};
    }
    delete @$self{qw(io timer)};
    close delete $self->{fh} if $self->{fh};
    return;
}

sub DESTROY { local ($@, $?); $_[0]->stop }

1;

__END__

=head1 NAME

StageBus::AnyEvent - run a stagebus loop inside AnyEvent

=head1 SYNOPSIS

    use AnyEvent;
    use StageBus;
    use StageBus::AnyEvent;

    my $loop = StageBus::Loop->new;
    my $host = StageBus::AnyEvent->new(loop => $loop);   # keep it
    # or, AnyEvent watching each of the loop's fds itself:
    # my $host = StageBus::AnyEvent->new(loop => $loop, fd_by_fd => 1);
    my $stage = StageBus::Stage->new(loop => $loop, name => 'Echo',
        handlers => { echo => sub { $_[0]->req->return(args => $_[0]->args) } });
    my $cv = AnyEvent->condvar;
    my $req = $stage->request(method => 'echo', args => { said => 'hi' },
                              on_return => sub { $cv->send($_[0]->args->{said}) });
    my $w = AnyEvent->timer(after => 10, cb => sub { $cv->croak('timed out') });
    print $cv->recv, "\n";

=head1 DESCRIPTION

An AnyEvent I/O watcher on the loop's fd and an AnyEvent timer of the
loop's C<timeout_ms>, re-armed after every dispatch: stagebus runs in
AnyEvent's thread with no thread or loop of its own, with any AnyEvent
backend (EV, the pure-Perl one, ...). Work queued by calls made from
AnyEvent callbacks makes the fd readable, so nothing else is needed.

With C<< fd_by_fd => 1 >>, AnyEvent watches each of the loop's fds itself
(C<< $loop->watch_fds >>) instead of the loop's one fd, which spares the
loop a second wait per wake-up. A loop is watched this way by one host
at a time: a second replaces the first, and stopping the first leaves
the second's watch alone.

The watchers live as long as the object (C<stop> or dropping it ends
them). Do not block on a condvar inside a stagebus handler: the loop is
not dispatched again until the handler returns.

=cut
