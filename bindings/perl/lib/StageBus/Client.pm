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
    if (grep { defined $a->{$_} } qw(name tls_ca tls_cert tls_key)) {
        my $o;
        StageBus::_check(StageBus::_C::sb_client_options_new(\$o), 'client options');
        my $st = StageBus::_C::sb_client_options_set_token($o, $token)
            || StageBus::_C::sb_client_options_set_name($o, StageBus::_to_c($a->{name}, 'the client name'))
            || StageBus::_C::sb_client_options_set_tls_ca($o, StageBus::_to_c($a->{tls_ca}, 'the TLS CA file'))
            || StageBus::_C::sb_client_options_set_tls_cert($o,
                StageBus::_to_c($a->{tls_cert}, 'the TLS certificate file'),
                StageBus::_to_c($a->{tls_key}, 'the TLS key file'))
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
    $self->on_connection_event($a->{on_connection_event}) if $a->{on_connection_event};
    $self->set_reconnect(%{ $a->{reconnect} }) if $a->{reconnect};
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
    # StageBus::POE::Proxy watches the notice and runs this code after.
    if ($self->{session_gone_mux}) {
        ref $code eq 'CODE' or StageBus::_croak(invalid_argument => 'on_session_gone needs a code ref');
        $self->{session_gone_user} = $StageBus::WRAP_CALLBACK ? $StageBus::WRAP_CALLBACK->($code) : $code;
        return;
    }
    $self->{session_gone_user} = $StageBus::WRAP_CALLBACK ? $StageBus::WRAP_CALLBACK->($code) : $code;
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

# Monitors the broker's traffic: on_tap gets each frame the broker saw
# as a hash; on_done (optional) the broker's answer ($error or undef).
sub monitor {
    my ($self, @args) = @_;
    my $a = StageBus::_named('monitor', \@args, 'on_tap');
    my $p = $self->_p;
    ref $a->{on_tap} eq 'CODE'
        or StageBus::_croak(invalid_argument => 'monitor: on_tap needs a code ref');
    my $session = defined $a->{session} ? StageBus::_to_c($a->{session}, 'the session') : undef;
    my ($done, $user, $free) = StageBus::_cb_args(
        done => $a->{on_done} // sub { },
        tap  => $a->{on_tap},
        loop => $self->{loop},
        what => 'on_done (monitor)',
    );
    StageBus::_check(
        StageBus::_C::sb_client_monitor($p, $session, $a->{payload} ? 1 : 0, StageBus::_fn('tap'), $done, $user, $free),
        'monitor');
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

# Calls a session by name, without subscribing: every response (each
# emit, then the final one) runs on_response($ctx); the call runs to its
# end with nothing to hold.
sub call {
    my ($self, @args) = @_;
    my $a = StageBus::_named('call', \@args, 'session', 'method');
    my $p = $self->_p;
    my $session = StageBus::_to_c($a->{session}, 'the session');
    my $method = StageBus::_to_c($a->{method}, 'the method');
    !defined $a->{on_response} || ref $a->{on_response} eq 'CODE'
        or StageBus::_croak(invalid_argument => 'call: on_response must be a code ref');
    StageBus::_with_args($a->{args}, sub {
        my ($args) = @_;
        # Registered last: the library owns it from the call on.
        my @cb = $a->{on_response}
            ? StageBus::_cb_args(handler => $a->{on_response}, loop => $self->{loop}, what => 'on_response')
            : (undef, undef, undef);
        StageBus::_check(StageBus::_C::sb_client_call($p, $session, $method, $args, @cb),
            "call '$a->{session}.$a->{method}'");
    });
    return;
}

# Calls a session by name and runs the loop until the final answer: the
# return's args as a hash ref, or dies with the StageBus::Error that
# ended the call. 'timeout' in seconds (default: the client's default
# timeout, if any).
sub call_sync {
    my ($self, @args) = @_;
    my $a = StageBus::_named('call_sync', \@args, 'session', 'method');
    my $p = $self->_p;
    my $session = StageBus::_to_c($a->{session}, 'the session');
    my $method = StageBus::_to_c($a->{method}, 'the method');
    my $timeout_ms = 0;
    if (defined $a->{timeout}) {
        my $t = $a->{timeout};
        ($t =~ /\A\s*(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*\z/ && $t > 0 && $t < 1e9)
            or StageBus::_croak(invalid_argument => "call_sync: 'timeout' wants a positive number of seconds, not '$t'");
        $timeout_ms = POSIX::ceil($t * 1000);
    }
    my $reply;
    StageBus::_with_args($a->{args}, sub {
        StageBus::_check(
            StageBus::_C::sb_client_call_sync($p, $session, $method, $_[0], $timeout_ms, \$reply),
            "call_sync '$a->{session}.$a->{method}'");
    });
    my $h = eval { StageBus::_decode_args($reply) };
    my $e = $@;
    StageBus::_C::sb_args_free($reply) if $reply;
    die $e if $e;
    return $h;
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

# Reconnecting (off by default): set_reconnect(initial_delay_ms => 100,
# max_delay_ms => 5000, max_attempts => 0 (forever), addresses => [...],
# fail_fast => 0, buffer_limit => 1024, republish_window_ms => 10000,
# resubscribe_wait_ms => 60000), every key optional.
sub set_reconnect {
    my ($self, @args) = @_;
    my $a = StageBus::_named('set_reconnect', \@args);
    my $p = $self->_p;
    my %num;
    for my $k (qw(initial_delay_ms max_delay_ms max_attempts buffer_limit republish_window_ms resubscribe_wait_ms)) {
        next unless exists $a->{$k};
        $num{$k} = _u64($a->{$k})
            // StageBus::_croak(invalid_argument => "set_reconnect: '$k' must be a whole number, not '" . ($a->{$k} // 'undef') . "'");
    }
    StageBus::_croak(invalid_argument => "set_reconnect: 'max_attempts' must be below 2**32")
        if defined $num{max_attempts} && $num{max_attempts} >= 4294967296;
    StageBus::_check(StageBus::_C::sb_client_set_reconnect($p,
        $num{initial_delay_ms} // 100, $num{max_delay_ms} // 5000, $num{max_attempts} // 0), 'set_reconnect');
    if (exists $a->{fail_fast} || exists $a->{buffer_limit}) {
        StageBus::_check(StageBus::_C::sb_client_set_reconnect_buffer($p,
            $a->{fail_fast} ? 1 : 0, $num{buffer_limit} // 1024), 'set_reconnect');
    }
    if (exists $a->{republish_window_ms} || exists $a->{resubscribe_wait_ms}) {
        StageBus::_check(StageBus::_C::sb_client_set_reconnect_restore($p,
            $num{republish_window_ms} // 10000, $num{resubscribe_wait_ms} // 60000), 'set_reconnect');
    }
    if (defined $a->{addresses}) {
        ref $a->{addresses} eq 'ARRAY'
            or StageBus::_croak(invalid_argument => "set_reconnect: 'addresses' must be an array reference");
        $self->add_address($_) for @{ $a->{addresses} };
    }
    return;
}

sub disable_reconnect {
    my ($self) = @_;
    StageBus::_check(StageBus::_C::sb_client_disable_reconnect($self->_p), 'disable_reconnect');
    return;
}

# A broker address tried in turn after the ones given so far
# (reconnecting must be on: invalid_state otherwise).
sub add_address {
    my ($self, $address) = @_;
    my $p = $self->_p;
    my $c = StageBus::_to_c($address, 'the address');
    StageBus::_check(StageBus::_C::sb_client_add_address($p, $c), 'add_address');
    return;
}

# $code->($event, $session, $err): $event is disconnected, reconnected,
# republish_failed ($session names the session then) or restore_failed
# ($session says which match or watch).
sub on_connection_event {
    my ($self, $code) = @_;
    my $p = $self->_p;
    my @cb = StageBus::_cb_args(connection_event => $code, loop => $self->{loop}, what => 'on_connection_event');
    StageBus::_check(StageBus::_C::sb_client_on_connection_event($p, @cb), 'on_connection_event');
    return;
}

# Emits a signal for a session this client publishes; every matching
# listener receives it, in order. not_publisher otherwise.
sub emit_signal {
    my ($self, @args) = @_;
    my $a = StageBus::_named('emit_signal', \@args, 'session', 'signal');
    my $p = $self->_p;
    my $session = StageBus::_to_c($a->{session}, 'the session');
    my $signal = StageBus::_to_c($a->{signal}, 'the signal');
    StageBus::_with_args($a->{args}, sub {
        StageBus::_check(StageBus::_C::sb_client_emit_signal($p, $session, $signal, $_[0]),
            "emit_signal '$a->{signal}'");
    });
    return;
}

# Listens for signals: on_signal->($session, $signal, \%args) for each
# signal matching both patterns (exact, 'prefix*' or '*'), in order,
# once the broker confirmed (on_done->($err)). Returns the match's id.
sub add_match {
    my ($self, @args) = @_;
    my $a = StageBus::_named('add_match', \@args, 'session', 'signal', 'on_signal');
    my $p = $self->_p;
    my $session = StageBus::_to_c($a->{session}, 'the session pattern');
    my $signal = StageBus::_to_c($a->{signal}, 'the signal pattern');
    ref $a->{on_signal} eq 'CODE'
        or StageBus::_croak(invalid_argument => 'add_match: on_signal needs a code ref');
    my ($done_fn, $user, $free) = StageBus::_cb_args(done => $a->{on_done} // sub { },
        loop => $self->{loop}, what => 'on_done (add_match)', on_signal => $a->{on_signal});
    my $id;
    StageBus::_check(StageBus::_C::sb_client_add_match($p, $session, $signal, StageBus::_fn('signal'),
        $done_fn, $user, $free, \$id), "add_match '$a->{session}' '$a->{signal}'");
    return $id;
}

# Ends a match; its on_signal runs no more.
sub remove_match {
    my ($self, @args) = @_;
    my $a = StageBus::_named('remove_match', \@args, 'id');
    my $p = $self->_p;
    my $id = _u64($a->{id})
        // StageBus::_croak(invalid_argument => "remove_match: the id must be an integer from 0 to 2**64-1, not '$a->{id}'");
    my @cb = StageBus::_cb_args(done => $a->{on_done} // sub { }, loop => $self->{loop}, what => 'on_done (remove_match)');
    StageBus::_check(StageBus::_C::sb_client_remove_match($p, $id, @cb), "remove_match $a->{id}");
    return;
}

# Watches names: on_event->({ event => 'present'|'appeared'|
# 'owner_changed'|'gone', name => N, methods => [...] or reason => $err })
# for the current state, then on_done->($err), then every change.
# Returns the watch's id.
sub watch {
    my ($self, @args) = @_;
    my $a = StageBus::_named('watch', \@args, 'on_event');
    my $p = $self->_p;
    my $pattern = StageBus::_to_c($a->{name} // '*', 'the name pattern');
    ref $a->{on_event} eq 'CODE'
        or StageBus::_croak(invalid_argument => 'watch: on_event needs a code ref');
    my ($done_fn, $user, $free) = StageBus::_cb_args(done => $a->{on_done} // sub { },
        loop => $self->{loop}, what => 'on_done (watch)', on_event => $a->{on_event});
    my $id;
    StageBus::_check(StageBus::_C::sb_client_watch($p, $pattern, StageBus::_fn('name_event'),
        $done_fn, $user, $free, \$id), "watch '" . ($a->{name} // '*') . "'");
    return $id;
}

# Ends a watch; its on_event runs no more.
sub unwatch {
    my ($self, @args) = @_;
    my $a = StageBus::_named('unwatch', \@args, 'id');
    my $p = $self->_p;
    my $id = _u64($a->{id})
        // StageBus::_croak(invalid_argument => "unwatch: the id must be an integer from 0 to 2**64-1, not '$a->{id}'");
    my @cb = StageBus::_cb_args(done => $a->{on_done} // sub { }, loop => $self->{loop}, what => 'on_done (unwatch)');
    StageBus::_check(StageBus::_C::sb_client_unwatch($p, $id, @cb), "unwatch $a->{id}");
    return;
}

# Answers of one-way requests served through this client, dropped.
sub dropped_answers { StageBus::_C::sb_client_dropped_answers($_[0]->_p) }

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

    use StageBus;

    my $loop   = StageBus::Loop->new;
    my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
    my ($connected, $listed, $answered);

    my $client = StageBus::Client->new(
        loop            => $loop,
        address         => $broker->address,        # tcp://127.0.0.1:PORT
        token           => undef,
        on_connect      => sub { my ($err, $connection_id) = @_; $connected = $connection_id },
        on_disconnect   => sub { my ($err) = @_ },
        on_session_gone => sub { my ($session, $err) = @_ },
        on_unknown_message => sub { my ($kind, $id, $payload) = @_; $answered = $payload },
    );
    my $stage = StageBus::Stage->new(loop => $loop, name => 'Foo',
        handlers => { ping => sub { $_[0]->req->return } });
    $stage->publish(client => $client, session => 'Foo', on_done => sub {
        $client->listing(on_listing => sub {
            my ($err, $sessions) = @_;      # [ { name => 'Foo', methods => ['ping'] } ]
            $listed = $sessions;
        });
    });
    $client->subscribe(session => 'Foo', wait => 5, on_subscribed => sub {
        my ($err, $remote) = @_;            # waits up to 5 s for Foo to be published
    });
    $client->send_custom(kind => 'frob', id => 42, payload => "\x01\x02");
    $loop->run_until(sub { $connected && $listed && $answered }, timeout_ms => 5000) or die 'no answers';
    print "connection $connected; sessions: ", join(', ', map { $_->{name} } @$listed), "\n";
    print "the broker says: $answered\n";

    # Calls by name, without a subscribe:
    $client->call(session => 'Foo', method => 'ping', args => { x => 1 },
                  on_response => sub { my ($ctx) = @_ });
    my $reply = $client->call_sync(session => 'Foo', method => 'ping',
                                   args => { x => 1 }, timeout => 5);   # {} : ping's return args

    $client->rescind(session => 'Foo', on_done => sub { my ($err) = @_ });
    $loop->run_for(50);

    # Reconnecting (off by default; every key optional):
    $client->set_reconnect(
        initial_delay_ms => 100, max_delay_ms => 5000, max_attempts => 0,
        addresses => ['unix:/run/other.sock'], fail_fast => 0, buffer_limit => 1024,
        republish_window_ms => 10000, resubscribe_wait_ms => 60000,
    );
    $client->on_connection_event(sub {
        my ($event, $session, $err) = @_;   # disconnected / reconnected / republish_failed / restore_failed
    });


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

C<set_reconnect> turns reconnecting on (also as C<reconnect =E<gt>
{...}> to C<new>; C<disable_reconnect> turns it off). After a lost
connection the client waits C<initial_delay_ms> (doubling per failed
attempt up to C<max_delay_ms>, with jitter) and connects to the next
address: the one given to C<new>, then C<addresses> (C<add_address>
adds one), round and round; C<max_attempts> 0 tries forever. At every
loss each call in flight ends once with C<broker_gone>: the publisher
may or may not have run it. Calls made meanwhile are held (at most
C<buffer_limit>, then C<limit_exceeded>) or with C<fail_fast> fail at
once with C<broker_gone>. Once connected again the client publishes its
sessions again (retrying for C<republish_window_ms> while the broker
still holds a name), renews its subscriptions, so remote stages keep
working, adds its signal matches again (signals emitted during the
outage are lost) and renews its name watches, each of which reports the
state afresh: C<gone> (C<publisher_gone>) for a name it knew that went
meanwhile, then C<present> per name published now.
C<on_connection_event> hears C<disconnected>, C<reconnected>,
C<republish_failed> (with the session's name and the error) and
C<restore_failed> (a match or watch the broker refused again, described
in C<$session>; it has ended).
C<on_disconnect> then runs only when the client gives up.

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
C<listing>, C<monitor(session =E<gt> NAME, payload =E<gt> 1, on_tap =E<gt>
sub { my ($event) = @_ }, on_done =E<gt> sub { my ($err) = @_ })> (every
frame the broker receives from other connections, as a hash: C<time_ms>,
C<from>, C<to>, C<kind>, C<session>, C<name>, C<id>, C<size>, C<error>,
C<args> with C<payload>), C<stats(on_stats =E<gt> sub { my ($err, $report) = @_ })>
(the broker's report of itself, the hash L<StageBus::Broker/report>
returns), C<subscribe>, C<rescind>, C<send_custom>, C<close>,
C<listing>, C<subscribe>, C<call>, C<call_sync>, C<rescind>,
C<send_custom>, C<close>,
C<close_gracefully(on_done =E<gt> $code)>, C<set_linger($ms)>,
C<set_default_timeout($ms)>, C<set_ping($interval_ms, $max)> (a broker
silent that long is pinged; after C<$max> unanswered pings it is taken
for gone, as a disconnect; defaults 120000 ms and 2; 0 ms: never),
C<set_reconnect(%settings)>, C<disable_reconnect>, C<add_address($address)>,
C<on_connection_event($code)> (see the DESCRIPTION),
C<loop>, C<address>. Publishing is L<StageBus::Stage/publish>.

=head2 Calls by name

C<call(session =E<gt> $name, method =E<gt> $m, args =E<gt> \%args,
on_response =E<gt> $code)> calls a session by its name, without a
subscribe (C<sb_client_call>): C<$code-E<gt>($ctx)> runs for each emit
and then the final response (C<$ctx-E<gt>rsp-E<gt>is_final>,
C<-E<gt>error>, C<-E<gt>recall>, C<-E<gt>cancel>); the call runs to its
end with nothing to hold (its final response, the client's default
timeout, a cancel, or the client closing).

C<call_sync(session =E<gt> $name, method =E<gt> $m, args =E<gt> \%args,
timeout =E<gt> $seconds)> makes the same call and runs the loop until
the final answer (C<sb_client_call_sync>): it returns the return's args
as a hash ref, or dies with the L<StageBus::Error> that ended the call
(C<no_such_session>, C<no_such_method>, the service's error, C<timeout>,
C<broker_gone>). Without C<timeout> the client's default timeout
applies, if any. Emits are passed over. Inside a callback of the loop
it dies with C<invalid_state>: use C<call> there.
=head2 Name watches

    my $id = $client->watch(
        name     => 'Foo*',                 # a name, 'prefix*' or '*' (default)
        on_event => sub {
            my ($e) = @_;   # { event => 'present'|'appeared'|'owner_changed'|'gone',
                            #   name => ..., methods => [...] or reason => $err }
        },
        on_done  => sub { my ($err) = @_ },  # after the current state
    );
    $client->unwatch(id => $id, on_done => sub { my ($err) = @_ });

The current state comes first (a C<present> event per matching published
session), then C<on_done>, then every change in order: C<appeared> (with
the methods), C<owner_changed> (a C<queue> name's standby took over),
C<gone> (with the reason: C<no_such_session> when rescinded,
C<publisher_gone> when its publisher disconnected).

=head2 Signals

    $client->emit_signal(session => 'Foo', signal => 'changed', args => { n => 1 });
    my $id = $client->add_match(
        session   => 'Foo',             # exact, 'prefix*' or '*'
        signal    => '*',
        on_signal => sub { my ($session, $signal, $args) = @_ },
        on_done   => sub { my ($err) = @_ },   # the broker confirmed
    );
    $client->remove_match(id => $id, on_done => sub { my ($err) = @_ });

C<emit_signal> sends a signal for a session this client publishes
(C<not_publisher> otherwise); every connection with a matching match
receives it, in the order it was emitted. C<add_match> listens from the
moment C<on_done> reports success; a listener that stops reading is cut
off by the broker, never slowing the emitter. C<dropped_answers> counts
the answers of one-way requests (L<StageBus::Remote/post>) served
through this client, which are dropped.

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
