package StageBus::Client;

use strict;
use warnings;

use Scalar::Util ();

our $VERSION = '0.01';

sub new {
    my ($class, @args) = @_;
    my $a = StageBus::_named('StageBus::Client->new', \@args, 'loop', 'address');
    my $loop = $a->{loop};
    my $lp = $loop->_p;
    my $address = StageBus::_to_c($a->{address}, 'the address');
    my $token = StageBus::_to_c($a->{token}, 'the token');
    # Registered last: the library owns it from the call on, even if the
    # call fails (its free_user runs then).
    my ($fn, $user, $free) = $a->{on_connect}
        ? StageBus::_cb_args(connect => $a->{on_connect}, loop => $loop, what => 'on_connect')
        : (undef, undef, undef);
    my $p;
    StageBus::_check(StageBus::_C::sb_client_connect($lp, $address, $token, $fn, $user, $free, \$p), 'connect');
    my $self = StageBus::_track(bless { p => $p, loop => $loop, pid => $$, address => $a->{address} }, $class);
    $self->on_disconnect($a->{on_disconnect})     if $a->{on_disconnect};
    $self->on_session_gone($a->{on_session_gone}) if $a->{on_session_gone};
    return $self;
}

sub _p {
    my ($self) = @_;
    $self->{loop}->_p;
    return $self->{p} // StageBus::_croak(invalid_state => 'the client was freed');
}

sub loop    { $_[0]{loop} }
sub address { $_[0]{address} }

sub on_disconnect {
    my ($self, $code) = @_;
    my $p = $self->_p;
    my @cb = StageBus::_cb_args(done => $code, loop => $self->{loop}, what => 'on_disconnect');
    StageBus::_check(StageBus::_C::sb_client_on_disconnect($p, @cb), 'on_disconnect');
    return;
}

sub on_session_gone {
    my ($self, $code) = @_;
    my $p = $self->_p;
    my @cb = StageBus::_cb_args(session_gone => $code, loop => $self->{loop}, what => 'on_session_gone');
    StageBus::_check(StageBus::_C::sb_client_on_session_gone($p, @cb), 'on_session_gone');
    return;
}

sub listing {
    my ($self, @args) = @_;
    my $a = StageBus::_named('listing', \@args, 'on_listing');
    my $p = $self->_p;
    my @cb = StageBus::_cb_args(listing => $a->{on_listing}, loop => $self->{loop}, what => 'on_listing');
    StageBus::_check(StageBus::_C::sb_client_listing($p, @cb), 'listing');
    return;
}

sub rescind {
    my ($self, @args) = @_;
    my $a = StageBus::_named('rescind', \@args, 'session');
    my $p = $self->_p;
    my $session = StageBus::_to_c($a->{session}, 'the session');
    my @cb = StageBus::_cb_args(done => $a->{on_done} // sub { }, loop => $self->{loop}, what => 'on_done (rescind)');
    StageBus::_check(StageBus::_C::sb_client_rescind($p, $session, @cb), "rescind '$a->{session}'");
    return;
}

sub subscribe {
    my ($self, @args) = @_;
    my $a = StageBus::_named('subscribe', \@args, 'session', 'on_subscribed');
    my $p = $self->_p;
    my $session = StageBus::_to_c($a->{session}, 'the session');
    my @cb = StageBus::_cb_args(subscribed => $a->{on_subscribed}, loop => $self->{loop},
        session => $a->{session}, what => 'on_subscribed');
    StageBus::_check(StageBus::_C::sb_remote_subscribe($p, $session, @cb), "subscribe '$a->{session}'");
    return;
}

# Closes the connection; pending operations complete with broker_gone.
sub close {
    my ($self) = @_;
    StageBus::_check(StageBus::_C::sb_client_close($self->_p), 'close');
    return;
}

sub _free {
    my ($self) = @_;
    StageBus::_untrack($self);
    my $p = delete $self->{p};
    StageBus::_C::sb_client_free($p) if $p && $self->{pid} == $$;
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

StageBus::Client - a connection to a stagebus broker

=head1 SYNOPSIS

    my $client = StageBus::Client->new(
        loop            => $loop,
        address         => 'tcp://127.0.0.1:7000',
        token           => undef,
        on_connect      => sub { my ($err, $connection_id) = @_ },
        on_disconnect   => sub { my ($err) = @_ },
        on_session_gone => sub { my ($session, $err) = @_ },
    );
    $client->listing(on_listing => sub {
        my ($err, $sessions) = @_;      # [ { name => 'Foo', methods => [...] }, ... ]
    });
    $client->subscribe(session => 'Foo', on_subscribed => sub {
        my ($err, $remote) = @_;        # a StageBus::Remote on success
    });
    $client->rescind(session => 'Foo', on_done => sub { my ($err) = @_ });

=head1 DESCRIPTION

Completion callbacks get the error first: C<undef> on success, else a
L<StageBus::Error>. There are no tags: a closure captures whatever the
completion needs (POEx::ProxySession's C<tag>). Operations may be
started before the connection is up. Errors the library reports at
once (C<rescind> of a session not published here: C<not_publisher>)
are thrown and the callback is not called.

There is no "unknown message" notification (POEx::ProxySession's
C<unknown_message_event>) yet: the Rust client has one
(C<Client::on_unknown_message>, C<Client::send_custom>), but the C API
this binding is built on does not expose it.

=head1 METHODS

C<new>, C<on_disconnect($code)>, C<on_session_gone($code)> (replacing
the previous one), C<listing>, C<subscribe>, C<rescind>, C<close>,
C<loop>, C<address>. Publishing is L<StageBus::Stage/publish>.

=cut
