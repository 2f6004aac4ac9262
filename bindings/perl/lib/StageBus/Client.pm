package StageBus::Client;

use strict;
use warnings;

use POSIX ();
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
    if (defined $a->{name}) {
        my $o;
        StageBus::_check(StageBus::_C::sb_client_options_new(\$o), 'client options');
        my $st = StageBus::_C::sb_client_options_set_token($o, $token)
            || StageBus::_C::sb_client_options_set_name($o, StageBus::_to_c($a->{name}, 'the client name'))
            || StageBus::_C::sb_client_connect_with($lp, $address, $o, $fn, $user, $free, \$p);
        StageBus::_C::sb_client_options_free($o);
        StageBus::_check($st, 'connect');
    } else {
        StageBus::_check(StageBus::_C::sb_client_connect($lp, $address, $token, $fn, $user, $free, \$p), 'connect');
    }
    my $self = StageBus::_track(bless { p => $p, loop => $loop, pid => $$, address => $a->{address} }, $class);
    $self->on_disconnect($a->{on_disconnect})     if $a->{on_disconnect};
    $self->on_session_gone($a->{on_session_gone}) if $a->{on_session_gone};
    $self->on_unknown_message($a->{on_unknown_message}) if $a->{on_unknown_message};
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

# Messages of application-defined kinds: $code->($kind, $id, $payload),
# the payload an octet string.
sub on_unknown_message {
    my ($self, $code) = @_;
    my $p = $self->_p;
    my @cb = StageBus::_cb_args(unknown_message => $code, loop => $self->{loop}, what => 'on_unknown_message');
    StageBus::_check(StageBus::_C::sb_client_on_unknown_message($p, @cb), 'on_unknown_message');
    return;
}

# Sends a message of an application-defined kind. The broker answers it
# with a protocol error, which reaches on_unknown_message as kind
# 'result' with this id.
sub send_custom {
    my ($self, @args) = @_;
    my $a = StageBus::_named('send_custom', \@args, 'kind', 'id');
    my $p = $self->_p;
    my $kind = StageBus::_to_c($a->{kind}, 'the kind');
    my $id = _u64($a->{id})
        // StageBus::_croak(invalid_argument => "send_custom: the id must be an integer from 0 to 2**64-1, not '$a->{id}'");
    my $payload = $a->{payload} // '';
    $payload = $payload->octets if Scalar::Util::blessed($payload) && $payload->isa('StageBus::Bytes');
    $payload = "$payload";
    utf8::downgrade($payload, 1)
        or StageBus::_croak(invalid_argument => 'send_custom: wide character (above 0xFF) in the payload; '
            . 'encode the text first');
    my ($pp, $n) = FFI::Platypus::Buffer::scalar_to_buffer($payload);
    StageBus::_check(StageBus::_C::sb_client_send_custom($p, $kind, $id, $pp, $n), "send_custom '$a->{kind}'");
    return;
}

# A decimal integer from 0 to 2**64-1 (compared as a string, so that a
# number just above the range is not rounded into it), or undef.
sub _u64 {
    my ($v) = @_;
    return undef unless defined $v && !ref $v && "$v" =~ /\A0*([0-9]+)\z/;
    my $digits = $1;
    return undef if length($digits) > 20 || (length($digits) == 20 && $digits gt '18446744073709551615');
    return $digits;
}

sub listing {
    my ($self, @args) = @_;
    my $a = StageBus::_named('listing', \@args, 'on_listing');
    my $p = $self->_p;
    my @cb = StageBus::_cb_args(listing => $a->{on_listing}, loop => $self->{loop}, what => 'on_listing');
    StageBus::_check(StageBus::_C::sb_client_listing($p, @cb), 'listing');
    return;
}

# The broker's report of itself: on_stats gets ($error, $report hash).
sub stats {
    my ($self, @args) = @_;
    my $a = StageBus::_named('stats', \@args, 'on_stats');
    my $p = $self->_p;
    my @cb = StageBus::_cb_args(listing => $a->{on_stats}, loop => $self->{loop}, what => 'on_stats');
    StageBus::_check(StageBus::_C::sb_client_stats($p, @cb), 'stats');
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
    my $wait_ms = 0;
    if (defined $a->{wait}) {
        my $w = $a->{wait};
        ($w =~ /\A\s*(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*\z/ && $w >= 0 && $w < 1e9)
            or StageBus::_croak(invalid_argument => "subscribe: 'wait' wants a number of seconds, not '$w'");
        $wait_ms = POSIX::ceil($w * 1000);
    }
    my @cb = StageBus::_cb_args(subscribed => $a->{on_subscribed}, loop => $self->{loop},
        session => $a->{session}, what => 'on_subscribed');
    StageBus::_check(StageBus::_C::sb_remote_subscribe_wait($p, $session, $wait_ms, @cb),
        "subscribe '$a->{session}'");
    return;
}

# Closes the connection; pending operations complete with broker_gone.
# What was accepted for sending still leaves first (within the linger
# time), also when the client is just dropped.
sub close {
    my ($self) = @_;
    StageBus::_check(StageBus::_C::sb_client_close($self->_p), 'close');
    return;
}

# close, then on_done->($err) once the output left ($err undef), or with
# the reason it did not (timeout, broker_gone, io, invalid_state).
sub close_gracefully {
    my ($self, @args) = @_;
    my $a = StageBus::_named('close_gracefully', \@args);
    my $p = $self->_p;
    my @cb = StageBus::_cb_args(done => $a->{on_done} // sub { }, loop => $self->{loop}, what => 'on_done (close_gracefully)');
    StageBus::_check(StageBus::_C::sb_client_close_graceful($p, @cb), 'close_gracefully');
    return;
}

# How long a later close may take to flush, in milliseconds.
sub set_linger {
    my ($self, $ms) = @_;
    my $p = $self->_p;
    my $n = _u64($ms)
        // StageBus::_croak(invalid_argument => "set_linger: the time must be a whole number of milliseconds, not '" . ($ms // 'undef') . "'");
    StageBus::_check(StageBus::_C::sb_client_set_linger($p, $n), 'set_linger');
    return;
}

# The deadline, in milliseconds, of later requests that set none; 0
# turns it off.
sub set_default_timeout {
    my ($self, $ms) = @_;
    my $p = $self->_p;
    my $n = _u64($ms)
        // StageBus::_croak(invalid_argument => "set_default_timeout: the time must be a whole number of milliseconds, not '" . ($ms // 'undef') . "'");
    StageBus::_check(StageBus::_C::sb_client_set_default_timeout_ms($p, $n), 'set_default_timeout');
    return;
}

# Pings a broker silent for $interval_ms; after $max unanswered pings it
# is taken for gone (calls end with broker_gone). 0 ms: never.
sub set_ping {
    my ($self, $interval_ms, $max) = @_;
    my $p = $self->_p;
    my $n = _u64($interval_ms)
        // StageBus::_croak(invalid_argument => "set_ping: the interval must be a whole number of milliseconds, not '" . ($interval_ms // 'undef') . "'");
    my $m = _u64($max);
    StageBus::_croak(invalid_argument => "set_ping: the most unanswered pings must be a whole number below 2**32, not '" . ($max // 'undef') . "'")
        unless defined $m && $m < 4294967296;
    StageBus::_check(StageBus::_C::sb_client_set_ping($p, $n, $m), 'set_ping');
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
        on_unknown_message => sub { my ($kind, $id, $payload) = @_ },
    );
    $client->listing(on_listing => sub {
        my ($err, $sessions) = @_;      # [ { name => 'Foo', methods => [...] }, ... ]
    });
    $client->subscribe(session => 'Foo', on_subscribed => sub {
        my ($err, $remote) = @_;        # a StageBus::Remote on success
    });
    $client->subscribe(session => 'Foo', wait => 5, on_subscribed => sub {
        my ($err, $remote) = @_;        # waits up to 5 s for Foo to be published
    });
    $client->rescind(session => 'Foo', on_done => sub { my ($err) = @_ });
    $client->send_custom(kind => 'frob', id => 42, payload => $octets);

=head1 DESCRIPTION

Completion callbacks get the error first: C<undef> on success, else a
L<StageBus::Error>. There are no tags: a closure captures whatever the
completion needs (POEx::ProxySession's C<tag>). Operations may be
started before the connection is up. Errors the library reports at
once (C<rescind> of a session not published here: C<not_publisher>)
are thrown and the callback is not called.

C<subscribe> with C<wait =E<gt> SECS> waits up to that many seconds
(fractions allowed) for the session to be published if it is not yet,
so that a caller may start before its service: C<on_subscribed> runs
once, with the remote stage as soon as the session is published, or a
C<no_such_session> error when the wait expires (the broker times the
wait). Without C<wait> (or with 0) a session not published is
C<no_such_session> at once.

C<on_unknown_message> is POEx::ProxySession's C<unknown_message_event>:
it gets messages of application-defined kinds as C<($kind, $id,
$payload)>, the payload an octet string. C<send_custom> sends one (kind,
id from 0 to 2**64-1, payload octets or a L<StageBus::Bytes>); the
broker knows no such kind and answers with a protocol error, which
arrives at C<on_unknown_message> as kind C<result>, with the same id and
the broker's text (C<protocol: Unknown message type 'KIND'>) as
payload.

=head1 METHODS

C<new>, C<on_disconnect($code)>, C<on_session_gone($code)>,
C<on_unknown_message($code)> (each replacing the previous one),
C<listing>, C<stats(on_stats =E<gt> sub { my ($err, $report) = @_ })>
(the broker's report of itself, the hash L<StageBus::Broker/report>
returns), C<subscribe>, C<rescind>, C<send_custom>, C<close>,
C<close_gracefully(on_done =E<gt> $code)>, C<set_linger($ms)>,
C<set_default_timeout($ms)>, C<set_ping($interval_ms, $max)> (a broker
silent that long is pinged; after C<$max> unanswered pings it is taken
for gone, as a disconnect; defaults 120000 ms and 2; 0 ms: never),
C<loop>, C<address>. Publishing is L<StageBus::Stage/publish>.

=head2 Default deadline

C<set_default_timeout($ms)> gives requests through this client that set
no C<timeout_ms> (and inherit none from the request they are made for)
a deadline of C<$ms> milliseconds; 0, the default, gives none: long
calls and streams of emits are legitimate.

=head2 Closing

C<close>, and dropping the last reference to the client, first write
out what the client already accepted for sending (an answer given just
before, emits, calls), for at most the linger time (C<set_linger>,
default 5000 ms); pending operations and calls complete with
C<broker_gone>. The flush runs on the loop: a stopped loop keeps the
output for its next run, a freed loop drops it. Output the socket takes
at once leaves during C<close>. C<close_gracefully(on_done =E<gt> sub {
my ($err) = @_ })> closes the same way and then reports: C<undef> once
everything was written, else a L<StageBus::Error> (C<timeout> when the
linger time passed first). To answer and then exit, stop the loop from
C<on_done>.

=cut
