package StageBus::Error;

use strict;
use warnings;

use overload
    '""'     => \&as_string,
    'bool'   => sub { 1 },
    fallback => 1;

our $VERSION = '0.01';

# The status codes of include/stagebus.h (numbers are stable). StageBus
# checks them against sb_strerror() when it loads the library.
our %CODE_OF = (
    ok               => 0,
    no_such_session  => 1,
    no_such_method   => 2,
    publisher_gone   => 3,
    broker_gone      => 4,
    timeout          => 5,
    limit_exceeded   => 6,
    protocol         => 7,
    already_exists   => 8,
    invalid_argument => 9,
    not_publisher    => 10,
    not_subscribed   => 11,
    refused          => 12,
    io               => 13,
    cancelled        => 14,
    handler_failed   => 16,
    invalid_state    => 17,
    unanswered       => 18,
    name_mode_conflict => 19,
    access_denied    => 20,
    null_argument    => 100,
    invalid_utf8     => 101,
    panic            => 102,
    wrong_type       => 103,
    not_found        => 104,
    wrong_thread     => 105,
    unknown          => 65535,
);
our %NAME_OF = reverse %CODE_OF;

# Where the error happened: the first frame outside the StageBus modules.
sub _location {
    my $i = 0;
    while (my @f = caller($i++)) {
        next if $f[0] =~ /^StageBus(?:::|$)/;
        return ($f[1], $f[2]);
    }
    my @f = caller(0);
    return ($f[1], $f[2]);
}

sub new {
    my ($class, %a) = @_;
    my $code = defined $a{code} ? $a{code} : $a{name};
    $code = 'unknown' unless defined $code;
    my ($num, $name);
    if ($code =~ /^\d+$/) {
        $num  = 0 + $code;
        $name = exists $NAME_OF{$num} ? $NAME_OF{$num} : 'unknown';
    }
    elsif (exists $CODE_OF{$code}) {
        ($num, $name) = ($CODE_OF{$code}, $code);
    }
    else {
        ($num, $name) = ($CODE_OF{unknown}, $code);
    }
    # Errors reported by a completion or a response carry no location:
    # where the event loop happened to be is of no use.
    my ($file, $line) = $a{async} ? (undef, undef) : defined $a{file} ? ($a{file}, $a{line}) : _location();
    my $message = defined $a{message} ? "$a{message}" : '';
    return bless {
        code    => $num,
        name    => $name,
        message => $message,
        file    => $file,
        line    => $line,
    }, $class;
}

sub throw {
    my $class = shift;
    die $class->new(@_);
}

sub code    { $_[0]{code} }
sub name    { $_[0]{name} }
sub message { $_[0]{message} }
sub file    { $_[0]{file} }
sub line    { $_[0]{line} }

sub is {
    my ($self, $what) = @_;
    return $what =~ /^\d+$/ ? $self->{code} == $what : $self->{name} eq $what;
}

sub as_string {
    my $self = shift;
    my $msg = length $self->{message} ? ": $self->{message}" : '';
    my $at = defined $self->{file} ? " at $self->{file} line $self->{line}." : '';
    return "stagebus: $self->{name} ($self->{code})$msg$at\n";
}

1;

__END__

=head1 NAME

StageBus::Error - the exception thrown by StageBus

=head1 SYNOPSIS

    use StageBus;

    my $loop   = StageBus::Loop->new;
    my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
    my $client = StageBus::Client->new(loop => $loop, address => $broker->address);

    use Scalar::Util qw(blessed);
    eval { $client->rescind(session => 'Nope', on_done => sub {}) };
    if (blessed $@ && $@->isa('StageBus::Error')) {
        print $@->name, " ", $@->code, " ", $@->message, "\n";
        print "not ours\n" if $@->is('not_publisher');
    }

=head1 DESCRIPTION

Every failing call of the StageBus modules dies with one of these. The
fields mirror the C API: C<code> is the stable C<sb_status> number,
C<name> its C<sb_strerror> name (C<no_such_session>, C<timeout>, ...),
C<message> the detail (C<sb_last_error>, or the error response's
message). It stringifies as

    stagebus: NAME (CODE): MESSAGE at FILE line LINE.

where FILE and LINE are those of the first caller outside StageBus.
Errors handed to callbacks (a failed completion, an error response, a
session gone) have no location (C<file> and C<line> are undef) and
stringify without the C<at ...> part.

Error responses (type C<error>) are handed to response handlers as
these objects too (C<< $rsp->error >>), and a handler may C<die> with one
to answer its request with that code instead of C<handler_failed>.

A loop and its objects belong to the thread that created the loop: a
call from another thread does nothing and dies with C<wrong_thread>.
After the loop was destroyed, using one of its objects dies with
C<invalid_state>.

=head1 METHODS

C<new(code =E<gt> NUMBER|NAME, message =E<gt> TEXT)>, C<throw(...)>
(C<new> then C<die>), C<code>, C<name>, C<message>, C<file>, C<line>,
C<is(NAME|NUMBER)>, C<as_string>.

=cut
