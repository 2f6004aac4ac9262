package StageBus::POE;

use strict;
use warnings;

use POE qw(Session);
use StageBus::POE::Callback;

our $VERSION = '0.01';

sub new {
    my ($class, @args) = @_;
    my $a = StageBus::_named('StageBus::POE->new', \@args, 'loop');
    my $loop = $a->{loop};
    my $self = bless { loop => $loop, alias => $a->{alias}, fds => {} }, $class;
    if ($a->{fd_by_fd}) {
        $self->{fd_by_fd} = 1;
    }
    else {
        open($self->{fh}, '<&', $loop->fd)
            or StageBus::_croak(io => "cannot duplicate the loop's fd: $!");
    }
    $self->{session_id} = POE::Session->create(
        inline_states => {
            _start => sub {
                my $kernel = $_[KERNEL];
                $kernel->alias_set($self->{alias}) if defined $self->{alias};
                if ($self->{fd_by_fd}) {
                    # Each fd the loop tells of, watched from this session.
                    my $id = $_[SESSION]->ID;
                    $self->{watch} = $loop->watch_fds(sub { $poe_kernel->call($id, sb_watch => @_) });
                }
                else {
                    $kernel->select_read($self->{fh}, 'sb_ready');
                }
                _arm($self, $kernel);
            },
            sb_ready    => sub { _dispatch($self, $_[KERNEL]) },
            sb_fd_ready => sub {
                my ($kernel, $mode, $fd) = @_[KERNEL, ARG1, ARG2];
                _dispatch($self, $kernel, $fd, $mode ? StageBus::Loop::FD_WRITE : StageBus::Loop::FD_READ);
            },
            sb_watch    => sub { _watch($self, @_[KERNEL, ARG0, ARG1]) },
            sb_timeout  => sub { _dispatch($self, $_[KERNEL]) },
            sb_shutdown => sub {
                my $kernel = $_[KERNEL];
                if ($self->{fd_by_fd}) {
                    # Only its own watch: a later host's stays.
                    $loop->unwatch_fds($self->{watch}) if $loop->alive && $self->{watch};
                    _watch($self, $kernel, $_, 0) for keys %{ $self->{fds} };
                }
                else {
                    $kernel->select_read($self->{fh});
                    close $self->{fh};
                }
                $kernel->delay('sb_timeout');
                $kernel->alias_remove($self->{alias}) if defined $self->{alias};
                $self->{stopped} = 1;
                delete $StageBus::POE::Callback::HOST_SESSIONS{ $self->{session_id} };
            },
            _stop => sub { },
        },
    )->ID;
    $StageBus::POE::Callback::HOST_SESSIONS{ $self->{session_id} } = 1;
    return $self;
}

# Watches `$fd` for `$events` (none: stops) through a duplicate of it,
# which POE may hold and this closes without closing the loop's fd.
sub _watch {
    my ($self, $kernel, $fd, $events) = @_;
    if (my $old = delete $self->{fds}{$fd}) {
        $kernel->select_read($old);
        $kernel->select_write($old);
        close $old;
    }
    return unless $events;
    open(my $fh, '<&', $fd) or StageBus::_croak(io => "cannot duplicate fd $fd: $!");
    $kernel->select_read($fh, 'sb_fd_ready', $fd) if $events & StageBus::Loop::FD_READ;
    $kernel->select_write($fh, 'sb_fd_ready', $fd) if $events & StageBus::Loop::FD_WRITE;
    $self->{fds}{$fd} = $fh;
}

sub loop       { $_[0]{loop} }
sub session_id { $_[0]{session_id} }

sub _dispatch {
    my ($self, $kernel, $fd, $events) = @_;
    return if $self->{stopped};
    my $loop = $self->{loop};
    return unless $loop->alive;
    return if $loop->in_dispatch;
    if (defined $fd) {
        $loop->dispatch_fd($fd, $events);
    }
    else {
        $loop->dispatch;
    }
    _arm($self, $kernel);
}

# The library's timeout as a POE delay, replaced after every dispatch.
sub _arm {
    my ($self, $kernel) = @_;
    return if $self->{stopped} || !$self->{loop}->alive;
    my $t = $self->{loop}->timeout_ms;
    if ($t < 0) {
        $kernel->delay('sb_timeout');
    }
    else {
        $kernel->delay(sb_timeout => $t / 1000);
    }
}

# Stops watching: the session ends, so POE::Kernel->run can return.
sub shutdown {
    my ($self) = @_;
    return if $self->{stopped};
    $poe_kernel->call($self->{session_id}, 'sb_shutdown');
    return;
}

1;

__END__

=head1 NAME

StageBus::POE - run a stagebus loop inside POE

=head1 SYNOPSIS

    use POE;
    use StageBus;
    use StageBus::POE;

    my $loop = StageBus::Loop->new;
    my $host = StageBus::POE->new(loop => $loop, alias => 'stagebus');  # fd_by_fd => 1: each fd
    my $stage = StageBus::Stage->new(loop => $loop, name => 'Echo',
        handlers => { echo => sub { $_[0]->req->return(args => $_[0]->args) } });
    POE::Session->create(inline_states => {   # sessions of your own, calling stagebus
        _start => sub {
            $_[HEAP]{req} = $stage->request(method => 'echo', args => { said => 'hi' },
                on_return => sub { $poe_kernel->yield(answered => $_[0]->args->{said}) });
        },
        answered => sub { print "$_[ARG0]\n"; $_[KERNEL]->post(stagebus => 'sb_shutdown') },
    });
    POE::Kernel->run;      # returns after $host->shutdown and your sessions end

=head1 DESCRIPTION

A POE::Session that watches the loop's fd with C<select_read> and keeps
a C<delay> of the loop's C<timeout_ms>, replaced after every dispatch
(with C<< fd_by_fd => 1 >>, it watches each of the loop's fds itself,
C<< $loop->watch_fds >>, sparing the loop a second wait per wake-up):
stagebus runs inside POE's loop, with no thread of its own. The
session keeps POE running until C<shutdown> (or a post of
C<sb_shutdown> to its alias) ends it.

Loading this module loads L<StageBus::POE::Callback>: a callback
registered from inside one of your sessions (a response handler, a
completion, a stage handler) runs inside that session, so C<yield>,
C<delay> and C<post> from it act on it. The POE layer on top:
L<StageBus::POE::Proxy> (a POE session per subscribed session),
L<StageBus::POE::Publish> (an existing POE session published),
L<StageBus::POE::Stage> (POE::Stage-style stage classes).

=cut
