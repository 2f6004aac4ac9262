package StageBus::Remote;

use strict;
use warnings;

our $VERSION = '0.01';

sub _wrap {
    my ($class, $p, $loop, $session) = @_;
    return StageBus::_track(bless { p => $p, loop => $loop, pid => $$, session => $session }, $class);
}

sub _p {
    my ($self) = @_;
    $self->{loop}->_p if $self->{loop};
    return $self->{p} // StageBus::_croak(invalid_state => 'the remote stage was freed');
}

sub session { $_[0]{session} }
sub name    { $_[0]{session} }
sub loop    { $_[0]{loop} }

sub unsubscribe {
    my ($self, @args) = @_;
    my $a = StageBus::_named('unsubscribe', \@args);
    my $p = $self->_p;
    my @cb = StageBus::_cb_args(done => $a->{on_done} // sub { }, loop => $self->{loop}, what => 'on_done (unsubscribe)');
    StageBus::_check(StageBus::_C::sb_remote_unsubscribe($p, @cb), "unsubscribe '$self->{session}'");
    return;
}

# A one-way request: the callee runs `method` with `args`; nothing comes
# back, not even an error, and the broker keeps no route.
sub post {
    my ($self, @args) = @_;
    my $a = StageBus::_named('post', \@args, 'method');
    my $p = $self->_p;
    my $method = StageBus::_to_c($a->{method}, 'the method');
    StageBus::_with_args($a->{args}, sub {
        StageBus::_check(StageBus::_C::sb_remote_post($p, $method, $_[0]), "post '$a->{method}'");
    });
    return;
}

sub request {
    my ($self, @args) = @_;
    return StageBus::Request->new(to => $self, @args);
}

sub _free {
    my ($self) = @_;
    StageBus::_untrack($self);
    my $p = delete $self->{p};
    StageBus::_C::sb_remote_free($p) if $p && $self->{pid} == $$;
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

StageBus::Remote - a session subscribed through a client

=head1 SYNOPSIS

    use StageBus;

    my $loop   = StageBus::Loop->new;
    my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
    my $client = StageBus::Client->new(loop => $loop, address => $broker->address);

    my $foo = StageBus::Stage->new(loop => $loop, name => 'Foo',
        handlers => { foo => sub { my ($ctx) = @_; $ctx->req->return(args => { got => $ctx->args->{arg} }) } });
    $foo->publish(client => $client, session => 'Foo');

    my ($req, $got, $unsubscribed);
    $client->subscribe(session => 'Foo', wait => 5, on_subscribed => sub {
        my ($err, $remote) = @_;
        die $err if $err;
        $req = $remote->request(method => 'foo', args => { arg => 'string' },
                                on_return => sub { my ($ctx) = @_; $got = $ctx->args->{got} });
        $remote->unsubscribe(on_done => sub { my ($err) = @_; $unsubscribed = !$err });
    });
    $loop->run_until(sub { $got && $unsubscribed }, timeout_ms => 5000) or die 'no answer';
    print "foo returned $got\n";

=head1 DESCRIPTION

What L<StageBus::Client/subscribe> gives: a request target that works
like a local L<StageBus::Stage> (same handlers, same emit, recall,
return and errors). Dropping it keeps the subscription;
C<unsubscribe> ends it (C<not_subscribed> is thrown at once if it
already ended, for example because the session was rescinded).

=head1 METHODS

C<request(...)> (L<StageBus::Request/new> with C<to> set),
C<unsubscribe(on_done =E<gt> $code)>, C<session>, C<loop>,
C<post(method =E<gt> $m, args =E<gt> \%args)>: a one-way request (POE's
C<post>, D-Bus's NO_REPLY_EXPECTED): the callee runs it and sees
C<$req-E<gt>expects_answer> false; nothing comes back, not even an
error, and the broker keeps no route for it.

=cut
