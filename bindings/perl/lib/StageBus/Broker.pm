package StageBus::Broker;

use strict;
use warnings;

use FFI::Platypus::Buffer qw(scalar_to_buffer);

our $VERSION = '0.01';

sub new {
    my ($class, @args) = @_;
    my $a = StageBus::_named('StageBus::Broker->new', \@args, 'loop', 'listen');
    my $loop = $a->{loop};
    my @listen = ref $a->{listen} eq 'ARRAY' ? @{ $a->{listen} } : ($a->{listen});
    @listen or StageBus::_croak(invalid_argument => 'StageBus::Broker->new: listen on at least one address');
    my @c = map { StageBus::_to_c($_, 'a listen address') } @listen;
    my $p;
    if (grep { exists $a->{$_} } qw(named_tokens socket_mode socket_group policy_file tls_cert tls_key tls_client_ca
                                   federate broker_id namespace nats_user nats_password nats_token nats_nkey
                                   nats_tls_ca nats_tls_cert nats_tls_key hb_interval_ms hb_timeout_ms
                                   nats_sys_events)) {
        my $o = _options($a);
        my $st = StageBus::_C::sb_broker_new_with($loop->_p, \@c, scalar @c, $o, \$p);
        StageBus::_C::sb_broker_options_free($o);
        StageBus::_check($st, 'broker');
    } else {
        StageBus::_check(
            StageBus::_C::sb_broker_new($loop->_p, \@c, scalar @c, StageBus::_to_c($a->{token}, 'the token'), \$p),
            'broker');
    }
    return StageBus::_track(bless { p => $p, loop => $loop, pid => $$ }, $class);
}

# The sb_broker_options of new's named arguments (freed by the caller;
# freed here when a setting is refused).
sub _options {
    my ($a) = @_;
    my $o;
    StageBus::_check(StageBus::_C::sb_broker_options_new(\$o), 'broker options');
    my $ok = eval {
        StageBus::_check(StageBus::_C::sb_broker_options_set_token($o, StageBus::_to_c($a->{token}, 'the token')), 'token');
        my $named = $a->{named_tokens} // {};
        ref $named eq 'HASH'
            or StageBus::_croak(invalid_argument => 'StageBus::Broker->new: named_tokens must be a hash of name => secret');
        for my $name (sort keys %$named) {
            StageBus::_check(StageBus::_C::sb_broker_options_add_named_token(
                $o, StageBus::_to_c($name, 'a token name'), StageBus::_to_c($named->{$name}, 'a token secret')), 'named token');
        }
        if (defined $a->{socket_mode}) {
            my $m = $a->{socket_mode};
            $m =~ /\A[0-7]{1,4}\z/
                or StageBus::_croak(invalid_argument => "StageBus::Broker->new: socket_mode must be an octal string such as '0660', not '$m'");
            StageBus::_check(StageBus::_C::sb_broker_options_set_socket_mode($o, oct $m), 'socket mode');
        }
        StageBus::_check(StageBus::_C::sb_broker_options_set_socket_group($o, StageBus::_to_c($a->{socket_group}, 'the socket group')), 'socket group')
            if defined $a->{socket_group};
        StageBus::_check(StageBus::_C::sb_broker_options_set_policy_file($o, StageBus::_to_c($a->{policy_file}, 'the policy file')), 'policy file')
            if defined $a->{policy_file};
        if (defined $a->{tls_cert} || defined $a->{tls_key}) {
            StageBus::_check(StageBus::_C::sb_broker_options_set_tls_cert(
                $o, StageBus::_to_c($a->{tls_cert}, 'the TLS certificate file'),
                StageBus::_to_c($a->{tls_key}, 'the TLS key file')), 'TLS certificate');
        }
        StageBus::_check(StageBus::_C::sb_broker_options_set_tls_client_ca(
            $o, StageBus::_to_c($a->{tls_client_ca}, 'the TLS client CA file')), 'TLS client CA')
            if defined $a->{tls_client_ca};
        if (defined $a->{federate}) {
            defined $a->{broker_id}
                or StageBus::_croak(invalid_argument => 'StageBus::Broker->new: federate needs a broker_id');
            StageBus::_check(StageBus::_C::sb_broker_options_set_federation($o,
                StageBus::_to_c($a->{federate}, 'the NATS servers'),
                StageBus::_to_c($a->{broker_id}, 'the broker id'),
                defined $a->{namespace} ? StageBus::_to_c($a->{namespace}, 'the namespace') : undef), 'federation');
            StageBus::_check(StageBus::_C::sb_broker_options_set_nats_credentials($o,
                map { defined $_ ? StageBus::_to_c($_, 'a NATS credential') : undef }
                    @{$a}{qw(nats_user nats_password nats_token)}), 'NATS credentials');
            if (defined $a->{nats_nkey}) {
                grep { defined $a->{$_} } qw(nats_user nats_password nats_token)
                    and StageBus::_croak(invalid_argument => 'StageBus::Broker->new: nats_nkey or nats_user/nats_token, not both');
                StageBus::_check(StageBus::_C::sb_broker_options_set_nats_nkey($o,
                    StageBus::_to_c($a->{nats_nkey}, 'the NKey seed file')), 'NATS NKey');
            }
            if (grep { defined $a->{$_} } qw(hb_interval_ms hb_timeout_ms)) {
                # The one not given keeps its default (as in the C docs).
                my ($interval, $timeout) = ($a->{hb_interval_ms} // 500, $a->{hb_timeout_ms} // 2000);
                for ([hb_interval_ms => $interval], [hb_timeout_ms => $timeout]) {
                    $_->[1] =~ /\A[0-9]{1,15}\z/
                        or StageBus::_croak(invalid_argument => "StageBus::Broker->new: $_->[0] must be a whole number of milliseconds, not '$_->[1]'");
                }
                StageBus::_check(StageBus::_C::sb_broker_options_set_federation_heartbeat($o,
                    $interval, $timeout), 'federation heartbeat');
            }
            StageBus::_check(StageBus::_C::sb_broker_options_set_federation_sys_events($o,
                $a->{nats_sys_events} ? 1 : 0), 'NATS disconnect events')
                if defined $a->{nats_sys_events};
            if (grep { defined $a->{$_} } qw(nats_tls_ca nats_tls_cert nats_tls_key)) {
                StageBus::_check(StageBus::_C::sb_broker_options_set_nats_tls($o,
                    map { defined $_ ? StageBus::_to_c($_, 'a NATS TLS file') : undef }
                        @{$a}{qw(nats_tls_ca nats_tls_cert nats_tls_key)}), 'NATS TLS');
            }
        }
        elsif (grep { defined $a->{$_} } qw(broker_id namespace nats_user nats_password nats_token nats_nkey
                                            nats_tls_ca nats_tls_cert nats_tls_key hb_interval_ms hb_timeout_ms
                                            nats_sys_events)) {
            StageBus::_croak(invalid_argument => 'StageBus::Broker->new: broker_id, namespace, nats_* and hb_* need federate');
        }
        1;
    };
    if (!$ok) {
        my $e = $@;
        StageBus::_C::sb_broker_options_free($o);
        die $e;
    }
    return $o;
}

sub _p {
    my ($self) = @_;
    $self->{loop}->_p;
    return $self->{p} // StageBus::_croak(invalid_state => 'the broker was closed');
}

sub loop { $_[0]{loop} }

# Every address it listens on, with the real port.
sub addresses {
    my ($self) = @_;
    my $p = $self->_p;
    my @out;
    for my $i (0 .. StageBus::_C::sb_broker_address_count($p) - 1) {
        my $buf = "\0" x 4096;
        my ($ptr, $len) = scalar_to_buffer($buf);
        StageBus::_check(StageBus::_C::sb_broker_address($p, $i, $ptr, $len), 'broker address');
        $buf =~ s/\0.*//s;
        push @out, StageBus::_from_c($buf);
    }
    return @out;
}

sub address { ($_[0]->addresses)[0] }

sub pending_calls { StageBus::_C::sb_broker_pending_calls($_[0]->_p) }

# The broker's report of itself, as a hash (see sb_broker_report).
sub report {
    my ($self) = @_;
    my $v;
    StageBus::_check(StageBus::_C::sb_broker_report($self->_p, \$v), 'report');
    my $report = StageBus::_decode_value($v);
    StageBus::_C::sb_value_free($v);
    return $report;
}

# The report in the Prometheus text exposition format.
sub report_prometheus {
    my ($self) = @_;
    my $p = $self->_p;
    my $size = 4096;
    for (1 .. 8) {
        my $buf = "\0" x $size;
        my ($ptr, $cap) = scalar_to_buffer($buf);
        my $len = 0;
        my $st = StageBus::_C::sb_broker_report_prometheus($p, $ptr, $cap, \$len);
        if ($st && StageBus::_C::sb_strerror($st) eq 'limit_exceeded' && $len + 1 > $cap) {
            $size = $len + 1024;
            next;
        }
        StageBus::_check($st, 'report_prometheus');
        return substr($buf, 0, $len);
    }
    StageBus::_croak(limit_exceeded => 'report_prometheus: the report kept growing');
}

# Operations the policy denied (each answered access_denied).
sub access_denied { StageBus::_C::sb_broker_access_denied($_[0]->_p) }

# TLS connections closed before their handshake was done.
sub tls_handshake_failures { StageBus::_C::sb_broker_tls_handshake_failures($_[0]->_p) }

# Pings connections silent for $interval_ms; one that leaves $max pings
# unanswered is closed as a disconnect. 0 ms: never.
sub set_ping {
    my ($self, $interval_ms, $max) = @_;
    my $p = $self->_p;
    my $n = StageBus::Client::_u64($interval_ms)
        // StageBus::_croak(invalid_argument => "set_ping: the interval must be a whole number of milliseconds, not '" . ($interval_ms // 'undef') . "'");
    my $m = StageBus::Client::_u64($max);
    StageBus::_croak(invalid_argument => "set_ping: the most unanswered pings must be a whole number below 2**32, not '" . ($max // 'undef') . "'")
        unless defined $m && $m < 4294967296;
    StageBus::_check(StageBus::_C::sb_broker_set_ping($p, $n, $m), 'set_ping');
    return;
}

# Sets one of the broker's limits by name while it runs: max-hello-frame,
# max-unauthenticated, max-registry-bytes-per-connection,
# max-registry-bytes, output-high-water, write-timeout-ms,
# max-input-bytes, max-memory, max-frame, ... (durations in ms; the
# names of `stagebus broker --limit` and sb_broker_set_limit). Croaks
# invalid_argument for an unknown name (the message lists them all) or a
# bad value.
sub set_limit {
    my ($self, $name, $value) = @_;
    my $p = $self->_p;
    my $n = StageBus::Client::_u64($value)
        // StageBus::_croak(invalid_argument => "set_limit: the value must be a whole number from 0 to 2**64-1, not '" . ($value // 'undef') . "'");
    my $c = StageBus::_to_c($name, 'the limit name');
    StageBus::_check(StageBus::_C::sb_broker_set_limit($p, $c, $n), 'set_limit');
    return;
}

# The current value of the broker's limit $name (see set_limit).
sub limit {
    my ($self, $name) = @_;
    my $p = $self->_p;
    my $c = StageBus::_to_c($name, 'the limit name');
    my $value = 0;
    StageBus::_check(StageBus::_C::sb_broker_limit($p, $c, \$value), 'limit');
    return $value;
}

# How many times a client went over one of the broker's limits (requests
# answered limit_exceeded, connections refused or closed for a limit).
sub limits_exceeded { StageBus::_C::sb_broker_limits_exceeded($_[0]->_p) }

# Tells every client the broker is going away (their calls end with
# broker_gone), stops listening; the notices leave on later turns of the
# loop (DESTROY does it otherwise).
sub close { $_[0]->_free; return }

sub _free {
    my ($self) = @_;
    StageBus::_untrack($self);
    my $p = delete $self->{p};
    StageBus::_C::sb_broker_free($p) if $p && $self->{pid} == $$;
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

StageBus::Broker - a stagebus broker on a loop

=head1 SYNOPSIS

    use StageBus;
    use File::Temp ();

    my $loop = StageBus::Loop->new;
    my $dir  = File::Temp->newdir;
    my $broker = StageBus::Broker->new(
        loop   => $loop,
        listen => ['tcp://127.0.0.1:0', "unix:$dir/bus.sock"],
        token  => 'secret',              # optional: clients must present it
    );
    print "listening on $_\n" for $broker->addresses;
    my $client = StageBus::Client->new(loop => $loop, address => $broker->address, token => 'secret');
    $loop->run_for(50);

=head1 DESCRIPTION

A broker, run by the loop it was made on: it keeps the published
sessions and routes requests between its clients (in this process or
others, over TCP or Unix sockets). Port 0 picks a free port;
C<address> and C<addresses> give the real ones. Dropping the object
closes the listeners and the broker's connections.

=head1 METHODS

C<new(loop, listen =E<gt> ADDRESS | [ADDRESS...], token)>, C<addresses>
(with the real ports), C<address> (the first), C<pending_calls>,
C<report> (a hash: C<uptime_ms>, C<totals>, C<errors> by code name,
C<connections> and C<sessions>, as C<sb_broker_report> describes),
C<report_prometheus> (the same in the Prometheus text format),
C<set_ping($interval_ms, $max)> (liveness: a connection silent that long
is pinged, one that leaves C<$max> pings unanswered is closed as a
disconnect; defaults 120000 ms and 2; 0 ms: never),
C<close> (DESTROY closes it too; clients are told the broker is going
away and their calls end with C<broker_gone>), C<loop>.

Federation: C<federate =E<gt> 'nats://H:P,nats://H:P', broker_id =E<gt> ID>
(and optionally C<namespace>, C<nats_user> with C<nats_password>,
C<nats_token>, or C<nats_nkey> naming a user's NKey seed file; TLS toward
NATS with C<nats_tls_ca>, and C<nats_tls_cert> with C<nats_tls_key>, or
C<tls://> server URLs; heartbeats with C<hb_interval_ms> (default 500)
and C<hb_timeout_ms>, after which a silent peer broker is declared dead
(default 2000, longer than the interval); C<nats_sys_events =E<gt> 1> to take
the NATS servers' client disconnect events, imported into the account, as
a faster sign of a peer broker's death) make the broker join other
brokers over a NATS cluster,
as C<sb_broker_options_set_federation> describes.

=cut
