package StageBus::POE::Stage;

use strict;
use warnings;

use B ();
use mro ();
use Scalar::Util ();

our $VERSION = '0.01';

our $DEFAULT_LOOP;
my $counter = 0;

# Subs of a stage class that are never handlers.
my %NOT_HANDLER = map { $_ => 1 } qw(new init on_init DESTROY AUTOLOAD import unimport can isa DOES VERSION
    BEGIN END INIT CHECK UNITCHECK);

# The loop stages use when new gets none.
sub set_default_loop {
    my ($class, $loop) = @_;
    $DEFAULT_LOOP = $loop;
    return;
}

sub new {
    my ($class, @args) = @_;
    @args % 2 == 0 or StageBus::_croak(invalid_argument => "$class->new(...) requires an even number of parameters");
    my %args = @args;
    my $loop = delete $args{loop} // $DEFAULT_LOOP
        // StageBus::_croak(invalid_argument => "$class->new: no loop (pass loop => ..., or call "
            . "StageBus::POE::Stage->set_default_loop(\$loop) first)");
    my $name = delete $args{name} // $class . '#' . ++$counter;
    my $self = bless {}, $class;
    my $weak = $self;
    Scalar::Util::weaken($weak);
    my %handlers = map {
        my $h = $_;
        ($h => sub { $weak->_handle($h, $_[0]) if $weak })
    } $class->handler_names;
    $self->{_stagebus} = StageBus::Stage->new(loop => $loop, name => $name, handlers => \%handlers);
    # POE::Stage's implicit init, synchronous, with the remaining args.
    if (my $init = $self->can('on_init') || $self->can('init')) {
        $self->$init(\%args);
    }
    return $self;
}

# The handler names of a class: the subs its own packages (those below
# StageBus::POE::Stage in its MRO) define, not imported ones, without a
# leading underscore.
sub handler_names {
    my ($class) = @_;
    $class = ref $class || $class;
    my %base = map { $_ => 1 } @{ mro::get_linear_isa(__PACKAGE__) };
    my %seen;
    for my $pkg (grep { !$base{$_} } @{ mro::get_linear_isa($class) }) {
        no strict 'refs';
        my $stash = \%{"${pkg}::"};
        for my $name (keys %$stash) {
            next if $name =~ /^_/ || $name =~ /::$/ || $NOT_HANDLER{$name} || $name !~ /^[A-Za-z]\w*$/;
            my $code = *{"${pkg}::$name"}{CODE} or next;
            my $gv = B::svref_2object($code)->GV;
            next unless $gv->isa('B::GV') && $gv->STASH->NAME eq $pkg;
            $seen{$name} = 1;
        }
    }
    return sort keys %seen;
}

# Runs the handler $name: ($self, $args), with req and rsp set.
sub _handle {
    my ($self, $name, $ctx) = @_;
    my $code = $self->can($name)
        or StageBus::_croak(no_such_method => ref($self) . " has no method '$name'");
    return $self->_run($code, $ctx);
}

# Runs $code as a handler of the stage: $self->$code($args), with req,
# rsp and the scopes of $ctx; code refs given as response handlers of
# requests made meanwhile are called the same way.
sub _run {
    my ($self, $code, $ctx) = @_;
    local $self->{_ctx} = $ctx;
    local $self->{_req};
    my $weak = $self;
    Scalar::Util::weaken($weak);
    local $StageBus::WRAP_RESPONSE = sub {
        my ($h) = @_;
        return sub { my ($c) = @_; $weak ? $weak->_run($h, $c) : $h->($c) };
    };
    return $self->$code($ctx->args);
}

sub _ctx {
    my ($self, $what) = @_;
    return $self->{_ctx} || StageBus::_croak(invalid_state => "$what is only defined while a handler of the stage runs");
}

# The request being served (the callee's side; in a response handler,
# the stage's own request that made the sub-request), or undef.
sub req {
    my ($self) = @_;
    return $self->{_req} if $self->{_req};
    my $s = $self->_ctx('req')->req or return undef;
    return $self->{_req} = StageBus::POE::Stage::Req->_new($s);
}

# The response being handled (StageBus::Response: recall, cancel, ...), or undef.
sub rsp { $_[0]->_ctx('rsp')->rsp }

# The handler's context (StageBus::Context).
sub ctx { $_[0]->_ctx('ctx') }

# POE::Stage's req_ scope: data of the request being served, on this
# side only, living as long as this side of the request.
sub req_scope {
    my ($self) = @_;
    my $req = $self->_ctx('req_scope')->req
        or StageBus::_croak(invalid_state => 'req_scope: the handler serves no request');
    return $req->data;
}

# POE::Stage's rsp_ scope: in a response handler, the data this stage
# attached to the sub-request ($request->data), living as long as its
# side of the request.
sub rsp_scope {
    my ($self) = @_;
    my $rsp = $self->_ctx('rsp_scope')->rsp
        or StageBus::_croak(invalid_state => 'rsp_scope: the handler handles no response');
    return $rsp->data;
}

# The low-level StageBus::Stage (what StageBus::Request->new sends to).
sub _stagebus_stage { $_[0]{_stagebus} }
sub stagebus_stage  { $_[0]{_stagebus} }
sub loop            { $_[0]{_stagebus}->loop }
sub stage_name      { $_[0]{_stagebus}->name }

sub publish {
    my ($self, @args) = @_;
    return $self->{_stagebus}->publish(@args);
}

sub set_kind {
    my ($self, @args) = @_;
    $self->{_stagebus}->set_kind(@args);
    return $self;
}

package StageBus::POE::Stage::Req;

our $VERSION = '0.01';

sub _new { bless { s => $_[1] }, $_[0] }

sub served       { $_[0]{s} }
sub id           { $_[0]{s}->id }
sub caller_id    { $_[0]{s}->caller_id }
sub is_open      { $_[0]{s}->is_open }
sub time_left_ms { $_[0]{s}->time_left_ms }
sub data         { $_[0]{s}->data }
sub keep         { $_[0]{s}->keep }
sub emit   { my $self = shift; $self->{s}->emit(@_) }
sub return { my $self = shift; $self->{s}->return(@_) }
sub fail   { my $self = shift; $self->{s}->fail(@_) }

# The callee gives up the request: its caller gets a 'cancelled' error.
# Returns whether it was open.
sub cancel {
    my ($self, @args) = @_;
    my $a = StageBus::_named('cancel', \@args);
    return 0 unless $self->{s}->is_open;
    $self->{s}->fail(code => 'cancelled', message => $a->{message} // 'cancelled by the callee');
    return 1;
}

1;

__END__

=head1 NAME

StageBus::POE::Stage - POE::Stage-style stages: classes whose methods are handlers

=head1 SYNOPSIS

    package Something;
    use parent 'StageBus::POE::Stage';

    sub do_emit {
        my ($self, $args) = @_;
        $self->req_scope->{newkey} = 8675;          # POE::Stage's my $req_newkey
        $self->req->emit(args => { n => $args->{n} });
    }

    sub do_return {
        my ($self, $args) = @_;
        $self->req->return(args => { newkey => $self->req_scope->{newkey} });
    }

    package App;
    use parent 'StageBus::POE::Stage';

    sub on_run {                                    # found for method 'run'
        my ($self, $args) = @_;
        $self->{something} = Something->new;        # self scope: the object
        my $go = StageBus::Request->new(
            stage     => $self->{something},
            method    => 'do_emit',
            args      => { n => 1 },
            on_emit   => 'do_recall',
            on_return => 'do_return',
        );
        $go->data->{key} = 309;                     # expose: seen as rsp_scope
        $self->req_scope->{go} = $go;               # kept as long as 'run' is
    }

    sub do_recall {
        my ($self, $args) = @_;
        print "emit n=$args->{n}, rsp_key=", $self->rsp_scope->{key}, "\n";
        $self->rsp->recall(method => 'do_return');
    }

    sub do_return {
        my ($self, $args) = @_;
        print "returned newkey=$args->{newkey}\n";
        $self->req->return(args => { ok => 1 });
    }

    package main;
    use StageBus;
    use StageBus::POE::Stage;

    my $loop = StageBus::Loop->new;
    StageBus::POE::Stage->set_default_loop($loop);
    my $app = App->new;
    my $done;
    my $req = StageBus::Request->new(stage => $app, method => 'run',
        on_return => sub { $done = $_[0]->args->{ok} });
    $loop->run_until(sub { $done }, timeout_ms => 5000) or die "no answer";

=head1 DESCRIPTION

The POE::Stage programming model on stagebus. A stage is an object of a
class derived from StageBus::POE::Stage; its methods are its handlers.
A POE::Stage program ports by renaming:

    POE::Stage                         StageBus::POE::Stage
    use base 'POE::Stage'              use parent 'StageBus::POE::Stage'
    POE::Request->new(stage => ..., method => ..., on_<type> => 'method' | sub,
                      args => {...}, role => ...)
                                       StageBus::Request->new(the same)
    my $req; $req->emit / return / cancel
                                       $self->req->emit / return / cancel
    my $rsp; $rsp->recall(method => ...)
                                       $self->rsp->recall(method => ...)
    my $req_foo                        $self->req_scope->{foo}
    my $rsp_foo                        $self->rsp_scope->{foo}
    expose $sub_request => my $x_foo   $sub_request->data->{foo}
    my $self_foo ($self->{foo})        $self->{foo}
    my $arg_foo                        $args->{foo} (my ($self, $args) = @_)

=over

=item Handlers

Every method the class (and its classes up to StageBus::POE::Stage)
defines itself, except names starting with C<_> and C<new>, C<init>,
C<on_init>, C<DESTROY>, ... A request for method C<foo> runs C<on_foo>
if the class has it, else C<foo> (the rule of POE::Stage 0.05). A
response of type T runs the request's C<on_T> (a method name of the
requesting stage or a code ref, called like a method: C<($self, $args)>),
else, with C<role =E<gt> R>, the method C<on_R_T>; C<on_my_T> of the
callee intercepts its own emits. Handlers are called as
C<< $self->$method($args) >>.

=item req, rsp

During a handler: C<< $self->req >> is the request being served
(C<emit(type =E<gt> ..., args =E<gt> {...})>, C<return(...)>,
C<fail(code =E<gt> ..., message =E<gt> ...)>, C<cancel> (its caller
gets a C<cancelled> error), C<keep>, C<id>, C<caller_id>, C<data>); in
a response handler it is the stage's own request that made the
sub-request. C<< $self->rsp >> is the response being handled
(L<StageBus::Response>: C<recall>, C<cancel>, C<type>, C<id>,
C<error>, C<data>). The caller's side cancels with C<< $request->cancel >>
(L<StageBus::Request>), or by dropping the request object.

=item req_scope, rsp_scope

Hash refs: the data of the request being served, on this side only,
and (in a response handler) the data this stage attached to the
sub-request (C<< $request->data >>). Each lives as long as its side of
the request: the two sides never see each other's data.

=item new(loop =E<gt> $loop, name =E<gt> $name, %args)

The loop defaults to C<< StageBus::POE::Stage->set_default_loop($loop) >>;
the name (what C<publish> and diagnostics use) to the class name and a
number. The remaining args go to C<on_init> (or C<init>), called before
C<new> returns, as POE::Stage's implicit init request.

=item publish(client =E<gt> ..., session =E<gt> ..., methods =E<gt> [...], on_done =E<gt> ...)

L<StageBus::Stage/publish>: other programs reach the listed methods.

=back

Handlers run in the POE session that was active when the stage was made
(L<StageBus::POE::Callback>), so C<< $poe_kernel->yield >> and C<delay>
from them act on that session.

=cut
