package StageBus::POE::Proxy;

use strict;
use warnings;

use POE::Kernel ();
use POE::Session ();
use Scalar::Util ();
use StageBus::POE::Args;
use StageBus::POE::Callback;
use StageBus::POE::Publish;

our $VERSION = '0.01';

our %BY_ALIAS;     # alias => the proxy (until unsubscribed, or replaced by a new one)
our %LIVE;         # refaddr => the proxy (until gone and drained)
my %WATCHED;       # refaddr(client) => { session name => { refaddr => weak proxy } }

sub _kernel { $POE::Kernel::poe_kernel }

# Where a completion goes (see StageBus::POE::Publish).
sub _completion { StageBus::POE::Publish::_completion(@_) }
sub _complete   { StageBus::POE::Publish::_complete(@_) }

sub subscribe {
    my ($class, @args) = @_;
    my $a = StageBus::_named('StageBus::POE::Proxy->subscribe', \@args, 'client', 'session');
    my ($client, $name) = @$a{qw(client session)};
    my $alias = $a->{alias} // $name;
    my $done = _completion('StageBus::POE::Proxy->subscribe', $a);
    my $subscriber = StageBus::POE::Callback::active_session();
    my $gone = defined $a->{gone_event}
        ? {
            session => defined $a->{return_session}
                ? StageBus::POE::Publish::_session_id('subscribe', $a->{return_session})
                : $subscriber && $subscriber->ID,
            event => $a->{gone_event},
          }
        : undef;
    my %opt = (
        client         => $client,
        name           => $name,
        alias          => $alias,
        response_event => $a->{response_event},
        gone           => $gone,
        tag            => $a->{tag},
    );
    local $StageBus::POE::Callback::DISABLED = 1;
    $client->subscribe(
        session => $name,
        (defined $a->{wait} ? (wait => $a->{wait}) : ()),
        on_subscribed => sub {
            my ($err, $remote) = @_;
            return _complete($done, error => $err, session_name => $name, alias => $alias) if $err;
            $client->listing(on_listing => sub {
                my ($err, $sessions) = @_;
                return _complete($done, error => $err, session_name => $name, alias => $alias) if $err;
                my ($entry) = grep { $_->{name} eq $name } @$sessions;
                my @methods = @{ ($entry && $entry->{methods}) || [] };
                my $proxy = eval { $class->_create(%opt, remote => $remote, methods => \@methods) };
                return _complete($done, error => $@, session_name => $name, alias => $alias) unless $proxy;
                _complete($done, session_name => $name, alias => $alias, methods => [@methods],
                    proxy => $proxy, session_id => $proxy->{session_id});
            });
        },
    );
    return;
}

sub _create {
    my ($class, %o) = @_;
    my $self = bless { %o, calls => {} }, $class;
    my $weak = $self;
    Scalar::Util::weaken($weak);
    my %states = map {
        my $method = $_;
        ($method => sub { $weak->_call($method, @_[POE::Session::SENDER(), POE::Session::ARG0() .. $#_]) if $weak })
    } @{ $o{methods} };
    my $alias_rc;
    $self->{session_id} = POE::Session->create(
        inline_states => {
            %states,
            _start => sub { $alias_rc = $_[POE::Session::KERNEL()]->alias_set($o{alias}) },
            shutdown => sub { $_[POE::Session::KERNEL()]->alias_remove($o{alias}); $weak->_end if $weak },
            _stop    => sub { },
        },
    )->ID;
    if ($alias_rc) {
        _kernel()->call($self->{session_id}, 'shutdown');
        StageBus::_croak(invalid_state => "the alias '$o{alias}' is taken by another POE session");
    }
    $BY_ALIAS{ $o{alias} } = $self;
    $LIVE{ Scalar::Util::refaddr($self) } = $self;
    _watch($o{client})->{ $o{name} }{ Scalar::Util::refaddr($self) } = $weak;
    return $self;
}

sub session_id { $_[0]{session_id} }
sub alias      { $_[0]{alias} }
sub name       { $_[0]{name} }
sub methods    { @{ $_[0]{methods} } }
sub remote     { $_[0]{remote} }

# The proxy of $alias, if any.
sub by_alias { $BY_ALIAS{ $_[1] } }

# Per call: where its responses go, instead of the proxy's defaults.
sub reply_to {
    my ($class, %o) = @_;
    return bless {%o}, 'StageBus::POE::Proxy::ReplyTo';
}

# A post of $method to the proxy (in the proxy's session).
sub _call {
    my ($self, $method, $sender, @values) = @_;
    my $to = @values && Scalar::Util::blessed($values[-1]) && $values[-1]->isa('StageBus::POE::Proxy::ReplyTo')
        ? pop @values : {};
    my $event = $to->{event} // $self->{response_event};
    my $session = $to->{session};
    $session = $sender->ID if !defined $session && ref $sender && !$sender->isa('POE::Kernel');
    $session = StageBus::POE::Publish::_session_id('reply_to', $session) if defined $session;
    my $target = defined $event && defined $session ? { session => $session, event => $event, tag => $to->{tag} } : undef;
    if ($self->{ended}) {
        return $self->_respond($target, $method, undef,
            StageBus::Error->new(code => 'not_subscribed', message => "the proxy of '$self->{name}' has ended", async => 1));
    }
    my $weak = $self;
    Scalar::Util::weaken($weak);
    my $key;
    my $req = eval {
        local $StageBus::POE::Callback::DISABLED = 1;
        $self->{remote}->request(
            method   => $method,
            args     => StageBus::POE::Args::to_args(@values),
            fallback => sub {
                my ($ctx) = @_;
                my $rsp = $ctx->rsp;
                my $final = $rsp->is_final;
                my $call = $final && $weak && delete $weak->{calls}{$key};
                $weak->_respond($target, $method, $ctx) if $weak;
                $weak->_drained if $final && $weak;
            },
        );
    };
    if (!$req) {
        my $err = $@;
        $self->_gone($err) if Scalar::Util::blessed($err) && $err->isa('StageBus::Error') && $err->is('not_subscribed');
        $err = StageBus::Error->new(code => 'handler_failed', message => "$err", async => 1)
            unless Scalar::Util::blessed($err) && $err->isa('StageBus::Error');
        return $self->_respond($target, $method, undef, $err);
    }
    $key = Scalar::Util::refaddr($req);
    # The posting session lives until the call's final response.
    $self->{calls}{$key} = [$req, $target && StageBus::POE::Hold->new($target->{session})];
    # What a $kernel->call of the proxy returns: the request's id (the
    # id of its responses).
    return $req->id;
}

# A response (or an error of the call itself) as an event to $target.
sub _respond {
    my ($self, $target, $method, $ctx, $err) = @_;
    if (!$target) {
        StageBus::_diagnose("a proxied call of $self->{name}:$method failed: $err") if $err;
        if ($ctx && (my $e = $ctx->rsp->error)) {
            StageBus::_diagnose("a proxied call of $self->{name}:$method failed: $e");
        }
        return;
    }
    my $rsp = StageBus::POE::Response->_new($self, $method, $target->{tag}, $ctx, $err);
    _kernel()->call($target->{session}, $target->{event}, $rsp, $rsp->values);
    $rsp->_invalidate;
    return;
}

# The session went away (rescinded, publisher gone) or the proxy was
# shut down: the alias goes, the subscriber is told.
sub _gone {
    my ($self, $err) = @_;
    return if $self->{ended}++;
    _kernel()->alias_remove($self->{alias}) if _in_own_session($self);
    _kernel()->post($self->{session_id}, 'shutdown') unless _in_own_session($self);
    if (my $g = $self->{gone}) {
        _kernel()->post($g->{session}, $g->{event}, {
            session_name => $self->{name},
            alias        => $self->{alias},
            error        => $err,
            tag          => $self->{tag},
        }) if defined $g->{session};
    }
    $self->_drained;
}

sub _in_own_session {
    my ($self) = @_;
    my $s = _kernel()->get_active_session;
    return ref $s && !$s->isa('POE::Kernel') && $s->ID == $self->{session_id};
}

sub _end {
    my ($self) = @_;
    $self->{ended}++;
    $self->_drained;
}

# Forgotten once ended and without calls in flight.
sub _drained {
    my ($self) = @_;
    return unless $self->{ended} && !%{ $self->{calls} };
    delete $LIVE{ Scalar::Util::refaddr($self) };
}

# Ends the subscription and the proxy session; the completion as
# subscribe's.
sub unsubscribe {
    my ($self, @args) = @_;
    my $a = StageBus::_named('unsubscribe', \@args);
    $self = $BY_ALIAS{ $a->{alias} // '' } || StageBus::_croak(not_subscribed => "no proxy session '" . ($a->{alias} // '') . "'")
        unless ref $self;
    my $done = _completion('unsubscribe', $a);
    my ($name, $alias) = @$self{qw(name alias)};
    delete $BY_ALIAS{$alias} if ($BY_ALIAS{$alias} // 0) == $self;
    # Already gone (rescinded, publisher gone): nothing is left to end.
    if ($self->{ended}) {
        _complete($done, session_name => $name, alias => $alias);
        return;
    }
    local $StageBus::POE::Callback::DISABLED = 1;
    my $weak = $self;
    Scalar::Util::weaken($weak);
    $self->{gone} = undef;    # asked for: no gone event
    my $ok = eval {
        $self->{remote}->unsubscribe(on_done => sub {
            my ($err) = @_;
            $weak->_gone(undef) if $weak;
            _complete($done, error => $err, session_name => $name, alias => $alias);
        });
        1;
    };
    return if $ok;
    my $err = $@;
    die $err unless Scalar::Util::blessed($err) && $err->isa('StageBus::Error') && $err->is('not_subscribed');
    # The subscription had ended already (another proxy of the same
    # client and session unsubscribed it, ...).
    $self->_gone(undef);
    _complete($done, session_name => $name, alias => $alias);
    return;
}

# The client's session-gone handler, shared by its proxies; the user's
# own handler (StageBus::Client::on_session_gone) still runs after it.
sub _watch {
    my ($client) = @_;
    my $key = Scalar::Util::refaddr($client);
    return $WATCHED{$key} if $WATCHED{$key};
    my $by_name = $WATCHED{$key} = {};
    my $weak = $client;
    Scalar::Util::weaken($weak);
    local $StageBus::POE::Callback::DISABLED = 1;
    my $mux = sub {
        my ($session, $err) = @_;
        for my $proxy (grep { defined } values %{ delete $by_name->{$session} || {} }) {
            $proxy->_gone($err);
        }
        my $user = $weak && $weak->{session_gone_user};
        $user->(@_) if $user;
    };
    my @cb = StageBus::_cb_args(session_gone => $mux, loop => $client->loop, what => 'on_session_gone');
    StageBus::_check(StageBus::_C::sb_client_on_session_gone($client->_p, @cb), 'on_session_gone');
    $client->{session_gone_mux} = 1;
    return $by_name;
}

package StageBus::POE::Response;

our $VERSION = '0.01';

sub _new {
    my ($class, $proxy, $method, $tag, $ctx, $err) = @_;
    my $self = bless { session_name => $proxy->{name}, alias => $proxy->{alias}, method => $method, tag => $tag }, $class;
    if ($ctx) {
        my $rsp = $ctx->rsp;
        @$self{qw(ctx rsp type final id args error)} =
            ($ctx, $rsp, $rsp->type, $rsp->is_final, $rsp->id, $ctx->args, $rsp->error);
    }
    else {
        @$self{qw(type final args error)} = ('error', 1, {}, $err);
    }
    return $self;
}

sub _invalidate { delete @{ $_[0] }{qw(ctx rsp)} }

sub type         { $_[0]{type} }
sub is_final     { $_[0]{final} ? 1 : 0 }
sub id           { $_[0]{id} }
sub args         { $_[0]{args} }
sub values       { StageBus::POE::Args::from_args($_[0]{args}) }
sub error        { $_[0]{error} }
sub tag          { $_[0]{tag} }
sub method       { $_[0]{method} }
sub session_name { $_[0]{session_name} }
sub alias        { $_[0]{alias} }

sub _rsp {
    my ($self) = @_;
    return $self->{rsp} || StageBus::_croak(invalid_state => 'a proxy response was used after its event returned');
}

# During the response event: answer an emit with a recall, or cancel.
sub recall { my $self = shift; $self->_rsp->recall(@_) }
sub cancel { $_[0]->_rsp->cancel }

1;

__END__

=head1 NAME

StageBus::POE::Proxy - a POE session standing for a subscribed session

=head1 SYNOPSIS

    use POE;
    use StageBus;
    use StageBus::POE;
    use StageBus::POE::Proxy;

    my $loop   = StageBus::Loop->new;
    my $host   = StageBus::POE->new(loop => $loop);
    my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
    my $client = StageBus::Client->new(loop => $loop, address => $broker->address);

    # Somebody publishes 'Greeter' (here: a stage in the same program).
    my $greeter = StageBus::Stage->new(loop => $loop, name => 'Greeter', handlers => {
        hello => sub { my ($ctx) = @_; $ctx->req->return(args => { ARG0 => "Hello, " . $ctx->args->{ARG0} . "!" }) },
    });
    $greeter->publish(client => $client, session => 'Greeter');

    POE::Session->create(inline_states => {
        _start => sub {
            StageBus::POE::Proxy->subscribe(
                client         => $client,
                session        => 'Greeter',
                wait           => 5,                 # seconds for it to be published
                return_event   => 'subscribed',
                response_event => 'greeted',         # responses to our posts
                gone_event     => 'greeter_gone',
                tag            => 'my tag',
            );
        },
        subscribed => sub {
            my $r = $_[ARG0];
            die "subscribe: $r->{error}" unless $r->{success};
            $_[KERNEL]->post(Greeter => hello => 'world');      # ARG0 = 'world'
        },
        greeted => sub {
            my ($rsp, $greeting) = @_[ARG0, ARG1];
            print "$greeting\n";                                # Hello, world!
            StageBus::POE::Proxy->by_alias('Greeter')->unsubscribe;
            $host->shutdown;
        },
        greeter_gone => sub { },
    });
    POE::Kernel->run;

=head1 DESCRIPTION

C<subscribe> subscribes to a published session and, on success,
creates a POE session under the published name (or C<alias>) with one
event per exported method: C<< $kernel->post($alias, $method, @args) >>
and C<call> deliver the request to the publisher (a C<call> returns
the request's id, which its responses carry as C<id>). Positional arguments
travel as C<ARG0>, C<ARG1>, ...; one plain hash ref as the args
themselves (L<StageBus::POE::Args>).

B<Responses> (emits, the return, errors) come back as POE events to the
session that posted, as C<response_event> (POEx::ProxySession's
C<return_event>), each a POE C<call> with C<ARG0> the response
(StageBus::POE::Response: C<type>, C<args>, C<values>, C<is_final>,
C<error> (a L<StageBus::Error> for an error response), C<id>, C<tag>,
C<method>, C<session_name>, C<alias>, and, during the event,
C<recall(method =E<gt> ..., args =E<gt> ...)> and C<cancel>) and
C<ARG1>.. the response's values. A post may end with
C<StageBus::POE::Proxy-E<gt>reply_to(event =E<gt> ..., session =E<gt> ..., tag =E<gt> ...)>
to send that call's responses elsewhere, with a tag. Without a
response event the call is fire-and-forget, as in the original, and a
failure is reported by C<warn> (the diagnostic hook).

The B<completion> of C<subscribe> (C<return_event> to C<return_session>,
default the caller; or C<on_done =E<gt> sub { my ($r) = @_ }>) gets a
hash ref: C<success>, C<error>, C<session_name>, C<alias>, C<methods>,
C<proxy> (this object), C<session_id> and the C<tag>.

The proxy B<goes away> when the session is rescinded or its publisher
is gone (or a post finds the subscription ended): its alias is removed,
later posts to it fail as posts to a missing session do, and
C<gone_event> is posted to the subscriber with a hash ref
(C<session_name>, C<alias>, C<error>, C<tag>). C<unsubscribe>
(C<$proxy-E<gt>unsubscribe(...)> or
C<StageBus::POE::Proxy-E<gt>unsubscribe(alias =E<gt> ...)>, completion
as above) ends it on purpose, without a gone event. Calls in flight
still get their responses.

The proxy session's own events C<_start>, C<_stop> and C<shutdown>
(which ends the proxy, as a post of it does) take precedence over
methods of those names.

The proxy watches the client's session-gone notice; a handler set with
L<StageBus::Client/on_session_gone> still runs.

=cut
