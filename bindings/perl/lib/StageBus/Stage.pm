package StageBus::Stage;

use strict;
use warnings;

our $VERSION = '0.01';

sub new {
    my ($class, @args) = @_;
    my $a = StageBus::_named('StageBus::Stage->new', \@args, 'loop', 'name');
    my $loop = $a->{loop};
    my $p;
    StageBus::_check(StageBus::_C::sb_stage_new($loop->_p, StageBus::_to_c($a->{name}, 'the stage name'), \$p),
        "stage '$a->{name}'");
    my $self = StageBus::_track(bless { p => $p, loop => $loop, pid => $$, name => $a->{name}, owned => 1 }, $class);
    # The stage's data slot, so that the borrowed stage a handler sees
    # ($ctx->stage) has the same data hash (its name comes from
    # sb_stage_name).
    my $id = StageBus::_register({ data => {} });
    StageBus::_check(StageBus::_C::sb_stage_set_data($p, $id, StageBus::_fn('free')), 'stage data');
    my $h = $a->{handlers} || {};
    ref $h eq 'HASH' or StageBus::_croak(invalid_argument => 'handlers must be a hash ref of code refs');
    $self->on($_ => $h->{$_}) for sort keys %$h;
    for my $opt (qw(recall_only internal)) {
        my $names = $a->{$opt} || [];
        ref $names eq 'ARRAY' or StageBus::_croak(invalid_argument => "$opt must be an array ref of names");
        $self->set_kind($_ => $opt) for @$names;
    }
    return $self;
}

my %KIND = (method => 0, recall_only => 1, internal => 2);

# Marks what the handler(s) of method $name are for: 'method' (the
# default), 'recall_only' (reached by a recall inside a transaction only,
# a dialogue's answer) or 'internal' (not a method: a role handler, ...).
# Other programs reach a published stage's exported methods by request,
# and those plus the recall-only ones by recall; anything else is
# no_such_method.
sub set_kind {
    my ($self, $name, $kind) = @_;
    defined $name or StageBus::_croak(invalid_argument => 'set_kind: a handler name is needed');
    defined $kind && exists $KIND{$kind}
        or StageBus::_croak(invalid_argument => "set_kind: kind must be method, recall_only or internal");
    StageBus::_check(StageBus::_C::sb_stage_set_kind($self->_p, StageBus::_to_c($name, 'the handler name'), $KIND{$kind}),
        "set_kind '$name'");
    return $self;
}

# The stage a handler runs on, valid during the handler.
sub _borrow {
    my ($class, $p, $loop) = @_;
    return bless { p => $p, loop => $loop, borrowed => 1 }, $class;
}

sub _invalidate { $_[0]{p} = undef }

sub _p {
    my ($self) = @_;
    $self->{loop}->_p if $self->{loop};
    return $self->{p} if defined $self->{p};
    StageBus::_croak(invalid_state => $self->{borrowed}
        ? 'this stage was borrowed by a handler that has returned'
        : 'the stage was freed');
}

sub loop { $_[0]{loop} }

sub name {
    my ($self) = @_;
    return $self->{name} if defined $self->{name};
    my ($ptr, $len);
    StageBus::_check(StageBus::_C::sb_stage_name($self->_p, \$ptr, \$len), 'stage name');
    my $name = $len ? FFI::Platypus::Buffer::buffer_to_scalar($ptr, $len) : '';
    return StageBus::_from_c($name);
}

# Registers (or replaces) the handler $name: a method, a response
# handler (on_return, on_<role>_<type>), on_my_<type> or on_cancel.
sub on {
    my ($self, $name, $code) = @_;
    defined $name or StageBus::_croak(invalid_argument => 'on: a handler name is needed');
    my $p = $self->_p;
    my $cname = StageBus::_to_c($name, 'the handler name');
    my @cb = StageBus::_cb_args(handler => $code, loop => $self->{loop}, what => "handler '$name'");
    StageBus::_check(StageBus::_C::sb_stage_on($p, $cname, @cb), "handler '$name'");
    return $self;
}

sub publish {
    my ($self, @args) = @_;
    my $a = StageBus::_named('publish', \@args, 'client', 'session');
    my @methods = map { StageBus::_to_c($_, 'a method name') } @{ $a->{methods} || [] };
    my ($p, $cp) = ($self->_p, $a->{client}->_p);
    my $session = StageBus::_to_c($a->{session}, 'the session');
    my %MODES = (exclusive => 0, queue => 1, balance => 2);
    my $mode = $MODES{ $a->{mode} // 'exclusive' }
        // StageBus::_croak(invalid_argument => "publish: 'mode' is exclusive, queue or balance, not '$a->{mode}'");
    my @cb = StageBus::_cb_args(done => $a->{on_done} // sub { }, loop => $self->{loop}, what => 'on_done (publish)');
    StageBus::_check(StageBus::_C::sb_stage_publish_mode($p, $cp, $session, \@methods, scalar @methods, $mode, @cb),
        "publish '$a->{session}'");
    return;
}

# The stage's own data (a hash ref, POE::Stage's $self scope).
sub data {
    my ($self) = @_;
    return StageBus::_data_slot(\&StageBus::_C::sb_stage_data, \&StageBus::_C::sb_stage_set_data, $self->_p);
}

sub request {
    my ($self, @args) = @_;
    return StageBus::Request->new(to => $self, @args);
}

sub _free {
    my ($self) = @_;
    return unless $self->{owned};
    StageBus::_untrack($self);
    my $p = delete $self->{p};
    StageBus::_C::sb_stage_free($p) if $p && $self->{pid} == $$;
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

StageBus::Stage - a named table of handlers (POE::Stage)

=head1 SYNOPSIS

    use StageBus;

    my $loop   = StageBus::Loop->new;
    my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
    my $client = StageBus::Client->new(loop => $loop, address => $broker->address);

    my $stage = StageBus::Stage->new(
        loop     => $loop,
        name     => 'Counter',
        handlers => {
            count => sub {
                my ($ctx) = @_;
                my $req = $ctx->req;
                $req->emit(type => 'tick', args => { i => $_ }) for 1 .. $ctx->args->{n};
                $req->return(args => { total => $ctx->args->{n} });
            },
        },
    );
    $stage->on(on_cancel => sub { });
    $stage->set_kind(answer => 'recall_only');  # a dialogue's answer
    $stage->publish(client => $client, session => 'Counter',
                    methods => ['count'],       # default: the request methods
                    on_done => sub { my ($err) = @_ });
    my ($ticks, $total);
    my $req = $stage->request(method => 'count', args => { n => 3 },
                              on_tick => sub { $ticks++ }, on_return => sub { $total = $_[0]->args->{total} });
    $loop->run_until(sub { defined $total }, timeout_ms => 5000) or die 'no answer';
    print "$ticks ticks, total $total\n";

=head1 DESCRIPTION

A handler gets one argument, a L<StageBus::Context>. Method handlers
answer through C<< $ctx->req >> (L<StageBus::Served>): any number of
C<emit>s, then one C<return> or C<fail>, now or later (keep
C<< $ctx->req->keep >>). A method handler that dies answers its
request with C<handler_failed> (or the code of a L<StageBus::Error>).

Handler names follow the C API: C<foo> or C<on_foo> for method C<foo>;
C<on_return>, C<on_E<lt>roleE<gt>_E<lt>typeE<gt>> for responses to
requests this stage makes; C<on_my_E<lt>typeE<gt>> to intercept the
stage's own responses; C<on_cancel>.

The stage lives on in the library while requests to it need it, even
after its object is dropped. A publication does not keep it: when the
stage goes, its sessions are rescinded, so keep the stage object for
as long as it should be served.

=head2 What other programs may call

A publication exports the C<methods> given, or without them the
stage's request methods: every handler name (without C<on_>) of kind
C<method>. C<on_cancel>, C<on_return>, C<on_emit>, C<on_error> and
C<on_my_E<lt>typeE<gt>> are of kind C<internal>; every other name is a
C<method> unless marked with C<set_kind> (or the C<recall_only> and
C<internal> lists of C<new>). A name cannot tell a role handler
(C<on_knock_hello>) from a method, so mark it C<internal>. Other
programs reach only exported methods by request, and exported plus
C<recall_only> methods by recall; anything else is C<no_such_method>.
Requests from the same loop are not filtered.

=head1 METHODS

C<new(loop, name, handlers =E<gt> {...}, recall_only =E<gt> [...],
internal =E<gt> [...])>, C<on($name, $code)>, C<set_kind($name, $kind)>
(C<method>, C<recall_only>, C<internal>),
C<publish(client, session, methods, mode, on_done)>, C<data> (a hash
ref kept with the stage), C<request(...)>, C<name>, C<loop>.

C<mode> says how the name takes several publishers: C<exclusive> (the
default; another publisher gets C<already_exists>), C<queue> (later
publishers stand by; when the owner goes or rescinds, the next takes
over, and calls in flight to the old owner end with C<publisher_gone>),
C<balance> (every publisher serves; each call goes to the one with the
fewest calls in flight and stays with it). The first publisher fixes the
mode: another is C<name_mode_conflict>.

=cut
